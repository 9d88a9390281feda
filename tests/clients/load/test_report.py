"""Capacity metrics by hand: goodput and attainment at several TPOT SLOs, repeats summarised."""

from __future__ import annotations

import pytest

from clients.load.replay import RequestTiming
from clients.load.report import LoadPoint, across_repeats, capacity, goodput, markdown, percentile, summarise

SLOS = [150.0, 250.0, 400.0]


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
    point = summarise("m", 3, [fast, slow, failed], wall_s=10.0, tpot_slos_ms=[200.0], verifier_rows=44)
    assert (point.requests, point.errors, point.tokens) == (3, 1, 22)
    assert point.at(200.0).goodput_tok_s == pytest.approx(1.1) and point.throughput_tok_s == pytest.approx(2.2)
    assert point.at(200.0).slo_attainment == 0.3333  # rounded to 4 places
    assert point.verifier_rows_per_token == 2.0 and point.acceptance_rate == 0.5
    assert (point.accepted_per_round, point.tokens_per_round) == (1.0, 2.0)
    assert point.ttft_p50_ms == 500.0


def test_goodput_at_several_slos() -> None:
    fast = timing(0.0, 0.1, 0.10, 11)  # TPOT 100 ms, 11 tokens
    mid = timing(0.0, 0.1, 0.20, 6)  # 200 ms, 6 tokens
    slow = timing(0.0, 0.1, 0.30, 5)  # 300 ms, 5 tokens
    failed = RequestTiming(0.0, [0.1, 0.2, 0.3], error="boom")  # fast, but failed: never good
    timings = [fast, mid, slow, failed]
    assert [goodput(timings, 2.0, s) for s in SLOS] == [goodput(timings, 2.0, 150.0), goodput(timings, 2.0, 250.0),
                                                        goodput(timings, 2.0, 400.0)]
    assert [(o.tpot_slo_ms, o.goodput_tok_s, o.slo_attainment) for o in (goodput(timings, 2.0, s) for s in SLOS)] == [
        (150.0, 5.5, 0.25), (250.0, 8.5, 0.5), (400.0, 11.0, 0.75)]
    point = summarise("m", 4, timings, 2.0, SLOS, None)
    assert [s.tpot_slo_ms for s in point.slos] == SLOS
    assert [point.at(s).goodput_tok_s for s in SLOS] == [5.5, 8.5, 11.0]
    assert point.throughput_tok_s == 11.0  # every successful token, in or out of the SLO
    assert goodput([], 1.0, 250.0).slo_attainment == 0.0 and goodput(timings, 0.0, 250.0).goodput_tok_s == 0.0


def point(clients: int, attainment: float, repeat: int = 0, slo: float = 200.0) -> LoadPoint:
    fast = timing(0.0, 0.1, 0.05, 5)
    slow = timing(0.0, 0.1, 0.5, 5)
    share = round(attainment * 10)
    return summarise("m", clients, [fast] * share + [slow] * (10 - share), 1.0, [slo], None, repeat=repeat)


def test_capacity_is_the_largest_count_whose_median_attainment_meets_the_target() -> None:
    one = across_repeats([point(1, 1.0), point(4, 0.9), point(8, 0.5)])
    assert capacity(one, "m", 200.0) == 4
    assert capacity(across_repeats([point(1, 0.5)]), "m", 200.0) == 0
    # repeats: 4 clients met it in two repeats of three (median 0.9), 8 clients in one only
    repeats = across_repeats([point(4, a, r) for r, a in enumerate([1.0, 0.5, 0.9])]
                             + [point(8, a, r) for r, a in enumerate([1.0, 0.5, 0.5])])
    assert capacity(repeats, "m", 200.0) == 4


def test_repeats_are_summarised_by_median_and_spread() -> None:
    points = [point(2, a, r) for r, a in enumerate([1.0, 0.6, 0.8])]
    (s,) = across_repeats(points)
    assert (s.mode, s.clients, s.repeats, s.requests) == ("m", 2, 3, 30)
    assert s.slo_attainment[200.0].values == (1.0, 0.6, 0.8) and s.slo_attainment[200.0].median == 0.8
    assert s.goodput_tok_s[200.0].values == (50.0, 30.0, 40.0) and s.goodput_tok_s[200.0].iqr == 10.0
    assert s.throughput_tok_s.values == (50.0, 50.0, 50.0)
    assert s.counts.drafted == 3 * 10 * 10 and s.counts.figures()["acceptance_rate"] == 0.5  # pooled
    d = s.as_dict()
    assert d["goodput_tok_s"]["200"]["median"] == 40.0 and d["acceptance_rate"] == 0.5
    assert d["counts"] == {"rounds": 150, "drafted": 300, "accepted": 150, "rejections": 0}


def test_markdown_gives_each_slo_and_median_with_range() -> None:
    points = [summarise("tandem", 2, [timing(0.0, 0.1, tpot, 5)], 1.0, SLOS, None, repeat=r)
              for r, tpot in enumerate([0.1, 0.2, 0.3])]
    md = markdown(points, SLOS, "tandem-load --repeats 3")
    assert "TPOT SLOs: 150, 250, 400 ms. Repeats: 3" in md
    assert "goodput tok/s @150 ms | goodput tok/s @250 ms | goodput tok/s @400 ms" in md
    # goodput at 150 ms: 5 tokens/s in the first repeat only; at 400 ms: in all three
    assert "| tandem | 2 | 0.00 [0.00-5.00] | 5.00 [0.00-5.00] | 5.00 [5.00-5.00] |" in md
    # capacity: at 150 ms attained in one repeat of three (median 0), at 250 ms in two (median 1)
    assert "| tandem | 0 | 2 | 2 |" in md
    assert "TPOT p50" in md and "200.0 [100.0-300.0]" in md
