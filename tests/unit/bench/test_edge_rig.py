"""bench/edge_rig.py reads wrk's latency distribution, and only it."""

from __future__ import annotations

import math

from bench.edge_rig import parse_wrk

# wrk 4.2 with --latency, as the edge benchmark ran it: the "+/- Stdev" column of both thread-stats
# lines ends in "…99%" and "…50%", which a search of the whole output once took for percentiles.
CAPTURED = """\
Running 5s test @ http://127.0.0.1:41235/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.21ms    3.10ms  41.52ms   87.99%
    Req/Sec    29.81k     1.65k   31.92k    62.50%
  Latency Distribution
     50%  160.00us
     75%    2.91ms
     90%    6.02ms
     99%   12.48ms
  148342 requests in 5.00s, 17.26MB read
Requests/sec:  29652.31
Transfer/sec:      3.45MB
"""


def test_percentiles_come_from_the_distribution_block() -> None:
    result = parse_wrk(CAPTURED)
    assert result.rps == 29652.31
    assert result.requests == 148342
    assert result.p50_ms == 0.16
    assert result.p99_ms == 12.48
    assert result.errors == ""


def test_missing_distribution_is_nan_not_a_neighbouring_word() -> None:
    without = CAPTURED.split("  Latency Distribution")[0] + "  148342 requests in 5.00s\nRequests/sec:  29652.31\n"
    result = parse_wrk(without)
    assert math.isnan(result.p50_ms)
    assert math.isnan(result.p99_ms)


def test_errors_are_reported() -> None:
    result = parse_wrk(CAPTURED.replace("Requests/sec", "  Socket errors: connect 0, read 3, write 0, timeout 0\n"
                                        "Requests/sec"))
    assert result.errors == "Socket errors: connect 0, read 3, write 0, timeout 0"
