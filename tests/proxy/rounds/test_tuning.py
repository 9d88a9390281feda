"""The dual threshold's tuner: its bookkeeping with a scripted search, and the Bayesian search
on a synthetic objective with a known optimum."""

from __future__ import annotations

import random

import pytest

from proxy.rounds.bayes_search import BayesianSearch, Point
from proxy.rounds.tuning import SPREAD, SegmentClock, ThresholdTuner


class Fixed:
    def __init__(self, point: Point = (0.2, 0.1), fail: bool = False) -> None:
        self.point = point
        self.fail = fail
        self.seen: list[int] = []

    def prepare(self) -> None:
        pass

    def next_point(self, observations: list[tuple[Point, float]]) -> Point:
        self.seen.append(len(observations))
        if self.fail:
            raise RuntimeError("no fit")
        return self.point


def test_the_configured_thresholds_come_first_then_the_spread_points_then_the_search() -> None:
    search = Fixed()
    tuner = ThresholdTuner(start=(0.3, 0.0), search=search)
    tried = []
    for _ in range(1 + len(SPREAD)):
        tried.append(tuner.current)
        assert tuner.observe(tuner.current, 0.05, 0.05, 0.5) is (len(tried) == 1 + len(SPREAD))
    assert tried == [(0.3, 0.0), *SPREAD]
    tuner.advance()
    assert tuner.current == (0.2, 0.1) and search.seen == [4]


def test_a_segment_of_an_old_point_counts_but_does_not_move_the_tuner() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed())
    assert not tuner.observe((0.7, 0.7), 0.04, None, None)
    assert tuner.current == (0.3, 0.0) and tuner.observations == [((0.7, 0.7), 0.04)]
    assert not tuner.observe(tuner.current, float("nan"), None, None)  # not a measurement
    assert len(tuner.observations) == 1


def test_while_a_search_runs_the_current_point_is_measured_again() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed(), )
    for _ in range(1 + len(SPREAD)):
        started = tuner.observe(tuner.current, 0.05, None, None)
    assert started
    assert not tuner.observe(tuner.current, 0.06, None, None)  # a second search is not started
    tuner.advance()
    assert tuner.current == (0.2, 0.1)


def test_a_failing_search_keeps_the_current_thresholds() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed(fail=True))
    for _ in range(1 + len(SPREAD)):
        tuner.observe(tuner.current, 0.05, None, None)
    before = tuner.current
    tuner.advance()
    assert tuner.current == before
    assert tuner.observe(tuner.current, 0.05, None, None)  # and the next segment may search again


def test_the_tuning_starts_over_from_its_best_point_when_the_link_or_the_acceptance_moves() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed())
    values = [0.05, 0.02, 0.09, 0.07]  # SPREAD[0] is the best
    for v in values:
        tuner.observe(tuner.current, v, 0.050, 0.50)
    tuner.advance()
    tuner.observe(tuner.current, 0.05, 0.060, 0.60)  # +20%: the same link
    assert tuner.retunes == 0 and len(tuner.observations) == 5
    tuner.advance()
    tuner.observe(tuner.current, 0.05, 0.100, 0.60)  # the round trip doubled
    assert tuner.retunes == 1 and tuner.observations == [] and tuner.current == SPREAD[0]
    tuner.observe(tuner.current, 0.05, 0.100, 0.60)
    tuner.observe(tuner.current, 0.05, 0.100, 0.30)  # the acceptance halved
    assert tuner.retunes == 2


def test_the_window_keeps_the_newest_observations() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed(), window=5)
    for i in range(12):
        tuner.observe((0.01 * i, 0.0), 0.05, None, None)
    assert [p[0] for p, _ in tuner.observations] == pytest.approx([0.07, 0.08, 0.09, 0.10, 0.11])


def test_a_segment_clock_skips_the_first_answer_and_restarts_on_a_new_point() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed(), segment_tokens=4)
    clock = SegmentClock(tuner)
    searches: list[int] = []
    clock.verified(9, 1.0, None, None, lambda: searches.append(1))  # the first answer: prefill included
    assert tuner.observations == []
    clock.verified(2, 1.1, None, None, lambda: searches.append(1))
    clock.verified(3, 1.5, None, None, lambda: searches.append(1))  # 5 tokens in 0.5 s
    assert tuner.observations == [((0.3, 0.0), pytest.approx(0.1))]
    assert clock.point == SPREAD[0] and clock.tokens == 0  # the tuner moved on: a new segment
    assert searches == []


def tpot(point: Point, rng: random.Random) -> float:
    """A smooth bowl with its minimum 0.040 s/token at (0.35, 0.2), 0.2 s/token slower per unit of
    squared distance from it, measured with 2% noise."""
    r2, r1 = point
    return (0.040 + 0.2 * ((r2 - 0.35) ** 2 + (r1 - 0.2) ** 2)) * (1 + 0.02 * rng.gauss(0, 1))


def test_the_bayesian_search_finds_the_optimum_of_a_synthetic_objective() -> None:
    rng = random.Random(3)
    tuner = ThresholdTuner(start=(0.6, 0.6), search=BayesianSearch(seed=1))
    for _ in range(18):
        point = tuner.current
        if tuner.observe(point, tpot(point, rng), None, None):
            tuner.advance()
    best = tuner.best()
    assert best is not None
    # within 0.15 of the optimum in each threshold: the true value there is within 3% of the optimum's
    assert abs(best[0] - 0.35) < 0.15 and abs(best[1] - 0.2) < 0.15
    assert 0.040 + 0.2 * ((best[0] - 0.35) ** 2 + (best[1] - 0.2) ** 2) < 0.040 * 1.03
    # and the points it measured come closer to the optimum than 18 random points do, in at least 18 of 20 draws
    def gap(p: Point) -> float:
        return (p[0] - 0.35) ** 2 + (p[1] - 0.2) ** 2

    closest = min(gap(p) for p, _ in tuner.observations)
    random_closest = []
    for seed in range(20):
        draws = random.Random(100 + seed)
        random_closest.append(min(gap((draws.uniform(0, 0.6), draws.uniform(0, 0.6))) for _ in range(18)))
    assert sum(closest <= r for r in random_closest) >= 18


def test_a_search_that_keeps_proposing_one_place_settles_on_the_best_point_until_a_retune() -> None:
    tuner = ThresholdTuner(start=(0.3, 0.0), search=Fixed((0.2, 0.1)))
    for v in (0.05, 0.03, 0.09, 0.07):  # SPREAD[0] measured best
        tuner.observe(tuner.current, v, 0.05, 0.5)
    for _ in range(3):
        tuner.advance()
        assert tuner.current in ((0.2, 0.1), SPREAD[0])
        tuner.observe(tuner.current, 0.04, 0.05, 0.5)
    assert tuner.settled and tuner.current == SPREAD[0]
    assert not tuner.observe(tuner.current, 0.04, 0.05, 0.5)  # settled: no search
    tuner.observe(tuner.current, 0.04, 0.2, 0.5)  # the link changed: start over
    assert not tuner.settled and tuner.retunes == 1
