from clients.sse import SSEDecoder

STREAM = b"data: one\n\n: comment\ndata: two\ndata: lines\n\nevent: x\nid: 7\ndata: three\r\n\r\ndata: [DONE]\n\n"


def test_whole_stream():
    events = SSEDecoder().feed(STREAM)
    assert [e.data for e in events] == ["one", "two\nlines", "three", "[DONE]"]
    assert events[2].event == "x" and events[2].id == "7"


def test_every_split_point_gives_the_same_events():
    whole = [e.data for e in SSEDecoder().feed(STREAM)]
    for cut in range(len(STREAM) + 1):
        dec = SSEDecoder()
        got = dec.feed(STREAM[:cut]) + dec.feed(STREAM[cut:])
        assert [e.data for e in got] == whole, cut


def test_byte_by_byte_with_crlf():
    dec = SSEDecoder()
    got = []
    for i in range(len(STREAM)):
        got += dec.feed(STREAM[i:i + 1])
    assert [e.data for e in got] == ["one", "two\nlines", "three", "[DONE]"]


def test_utf8_split_inside_a_character():
    data = "data: héllo\n\n".encode()
    dec = SSEDecoder()
    cut = data.index(b"\xc3") + 1
    assert [e.data for e in dec.feed(data[:cut]) + dec.feed(data[cut:])] == ["héllo"]
