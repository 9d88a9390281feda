"""The acceptance figures by hand, and both harnesses reporting them under the same names with the
same values."""

from __future__ import annotations

import pytest

from clients.bench.measure import MODES, RequestResult, summarise
from clients.bench.metrics import RoundCounts
from clients.load.replay import RequestTiming
from clients.load.report import summarise as load_summarise
from verifier.core import bounds

FIGURES = ("acceptance_rate", "accepted_per_round", "tokens_per_round", "alpha_per_token")


def test_the_figures_by_hand() -> None:
    # 10 rounds of 4 drafts: 30 accepted, 8 rounds ended on a rejection
    c = RoundCounts(rounds=10, drafted=40, accepted=30, rejections=8)
    assert c.acceptance_rate == 0.75
    assert c.accepted_per_round == 3.0
    assert c.tokens_per_round == 4.0  # 30 accepted + one token of the target's per round, over 10 rounds
    assert c.alpha_per_token == pytest.approx(30 / 38) == bounds.per_token_alpha(30, 8)
    assert c.figures() == {"acceptance_rate": 0.75, "accepted_per_round": 3.0, "tokens_per_round": 4.0,
                           "alpha_per_token": 0.7895}


def test_nothing_drafted_gives_zeros() -> None:
    assert set(RoundCounts(rounds=40).figures().values()) == {0.0}  # a cloud-only stream: 40 chunks
    assert set(RoundCounts().figures().values()) == {0.0}


def test_counts_add_up_over_requests() -> None:
    stats: list[dict[str, float]] = [{"rounds": 4, "drafted": 16, "accepted": 12, "rejections": 3, "draft_ms": 5.0},
                                     {"rounds": 1}]
    total = RoundCounts.total(RoundCounts.from_stats(s) for s in stats)
    assert total == RoundCounts(5, 16, 12, 3)
    assert total.accepted_per_round == 2.4 and total.tokens_per_round == 3.4  # pooled, not a mean of ratios


def test_both_harnesses_report_the_same_figures() -> None:
    stats = {"rounds": 10, "drafted": 40, "accepted": 30, "rejections": 8, "draft_ms": 400.0,
             "verify_compute_ms": 600.0}
    request = RequestResult(scenario="s", mode="vanilla", prompt_id=0, category="c", text="x", completion_tokens=40,
                            ttft_s=0.1, total_s=1.0, delta_times_s=[0.1, 1.0], stats=stats, bytes_up=0, bytes_down=0,
                            edge_cpu_s=0.0)
    bench = summarise([request], MODES["vanilla"], rtt_s=0.05).as_dict()
    timing = RequestTiming(0.0, [0.1 * i for i in range(40)], rounds=10, drafted=40, accepted=30, rejections=8)
    load = vars(load_summarise("tandem", 1, [timing], 1.0, [250.0], None))
    assert {k: bench[k] for k in FIGURES} == {k: load[k] for k in FIGURES} == RoundCounts(10, 40, 30, 8).figures()
