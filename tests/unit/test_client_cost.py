"""benchmarks/client_cost.py counts a client's work per request as the difference of a short
and a long run, read from callgrind's and strace's own output files."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from client_cost import Count, callgrind_total, parse_args, strace_total, table
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

# The tail of a callgrind output file (valgrind 3.19) and of `strace -f -c -o` output.
CALLGRIND = """\
fn=(12) 0x000000000001ab70
0 3
summary: 191869880


totals: 191869880
"""
STRACE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 28.22    0.049197          11      4379           poll
 24.20    0.042191           9      4377      1976 recvfrom
------ ----------- ----------- --------- --------- ------------------
100.00    0.174313          10     17432      6384 total
"""
STRACE_NO_ERRORS = STRACE.replace("     17432      6384 total", "     17432           total")


def test_totals_are_read_from_the_tools_own_files(tmp_path):
    (tmp_path / "cg").write_text(CALLGRIND)
    assert callgrind_total(tmp_path / "cg") == 191_869_880
    for text in (STRACE, STRACE_NO_ERRORS):
        (tmp_path / "st").write_text(text)
        assert strace_total(tmp_path / "st") == 17432
    (tmp_path / "empty").write_text("")
    with pytest.raises(RuntimeError, match="no callgrind total"):
        callgrind_total(tmp_path / "empty")
    with pytest.raises(RuntimeError, match="no strace summary"):
        strace_total(tmp_path / "empty")


def test_start_up_cancels_in_the_difference():
    # 1,000,000 of start-up in both runs, 50,000 per request
    c = Count(short=(1_000_000 + 50_000 * 100, 100), long=(1_000_000 + 50_000 * 400, 400))
    assert c.per_request == 50_000
    assert Count(short=(5, 100), long=(9, 100)).per_request is None    # no more requests


def test_table_puts_each_client_against_the_native_tool():
    both = {"instructions": Count((0, 0), (5_000_000, 1000)),
            "syscalls": Count((0, 0), (6000, 1000))}
    curl = {"instructions": Count((0, 0), (56_000_000, 1000)),
            "syscalls": Count((0, 0), (7200, 1000))}
    text = table({"caddy-http/1.1": {"native": both, "libcurl-c": curl}})
    assert "| caddy-http/1.1 | wrk | 5,000 | 1.0x | 6.0 |" in text
    assert "| caddy-http/1.1 | libcurl in C | 56,000 | 11.2x | 7.2 |" in text


def test_unknown_names_are_refused_in_words(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--clients", "native,ab"])
    assert "unknown client 'ab'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--protocols", "http/3"])
    assert "unknown protocol 'http/3'" in capsys.readouterr().err
