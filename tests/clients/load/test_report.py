"""Capacity metrics by hand."""

from __future__ import annotations

import pytest

from clients.load.replay import RequestTiming
from clients.load.report import capacity, percentile, summarise


def timing(start: float, first: float, tpot: float, n: int) -> RequestTiming:
    return RequestTiming(start, [first + i * tpot for i in range(n)], rounds=n, drafted=2 * n, accepted=n)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(list(range(101)), 0.99) == 99


def test_goodput_counts_only_requests_within_the_slo() -> None:
    fast = timing(0.0, 0.5, 0.05, 11)  # TPOT 50 ms, 11 tokens
    slow = timing(0.0, 0.5, 0.30, 11)  # TPOT 300 ms
    failed = RequestTiming(0.0, error="boom")
    point = summarise("m", 3, [fast, slow, failed], wall_s=10.0, tpot_slo_s=0.2, verifier_rows=44)
    assert (point.requests, point.errors, point.tokens) == (3, 1, 22)
    assert point.goodput_tok_s == pytest.approx(1.1) and point.throughput_tok_s == pytest.approx(2.2)
    assert point.slo_attainment == 0.3333  # rounded to 4 places
    assert point.verifier_rows_per_token == 2.0 and point.acceptance == 0.5
    assert point.ttft_p50_ms == 500.0


def test_capacity_is_the_largest_count_meeting_the_attainment() -> None:
    def point(n: int, attainment: float):  # type: ignore[no-untyped-def]
        fast = timing(0.0, 0.1, 0.05, 5)
        slow = timing(0.0, 0.1, 0.5, 5)
        share = round(attainment * 10)
        return summarise("m", n, [fast] * share + [slow] * (10 - share), 1.0, 0.2, None)

    assert capacity([point(1, 1.0), point(4, 0.9), point(8, 0.5)], "m") == 4
    assert capacity([point(1, 0.5)], "m") == 0
