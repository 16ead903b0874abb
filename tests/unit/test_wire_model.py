"""Loopback TCP counts modelled at a 1,500-byte MTU, so TCP and QUIC figures compare."""

from clients.transport.wire import MSS, TCP_HEADERS, modelled_segments


def test_one_big_loopback_segment_becomes_one_per_mss():
    # 153,600 B went down as 3 loopback segments of ~64 KB; a real link needs 107.
    assert modelled_segments(153_600, 3, 3, 1, 1_000) == 107 + 0


def test_acks_follow_the_data_coming_the_other_way():
    # The upstream side of that response: one request segment plus an ACK per two
    # full data segments coming down (delayed ACKs), even if loopback sent only one.
    up = modelled_segments(1_000, 1, 2, 3, 153_600)
    assert up == 1 + 107 // 2


def test_small_writes_keep_their_own_segments():
    # 300 requests of 1 KB each are 300 segments, not 300 KB / MSS.
    assert modelled_segments(300_000, 300, 300, 0, 0) == 300


def test_header_share_is_realistic_for_a_large_response():
    segs = modelled_segments(153_600, 3, 3, 1, 1_000)
    overhead = segs * TCP_HEADERS / 153_600
    assert 0.03 < overhead < 0.04 and MSS == 1448
