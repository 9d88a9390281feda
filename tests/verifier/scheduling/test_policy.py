"""The SLO-aware batch policy, with numbers: EDF, value density, deadline checks, budgets."""

from __future__ import annotations

from verifier.scheduling.estimator import BatchShape
from verifier.scheduling.policy import Budget, Candidate, plan_batch, queue_delay


def cost(shape: BatchShape) -> float:
    """A pass costs 10 ms plus 1 ms a new token."""
    return 0.010 + 0.001 * sum(shape.new_tokens) if shape.new_tokens else 0.0


def cand(key: int, deadline: float, new: int = 5, value: float = 2.0, arrival: float = 0.0) -> Candidate:
    return Candidate(key, arrival, deadline, new, 100, value)


BIG = Budget(max_tokens=1000, max_items=100)


def test_the_earliest_deadline_always_goes_first() -> None:
    plan = plan_batch([cand(1, 5.0), cand(2, 0.5), cand(3, 9.0)], 0.0, cost, Budget(1000, 1))
    assert plan.keys == (2,)


def test_everything_fits_when_deadlines_allow() -> None:
    plan = plan_batch([cand(k, 1.0) for k in range(5)], 0.0, cost, BIG)
    assert sorted(plan.keys) == list(range(5)) and abs(plan.predicted_s - 0.035) < 1e-12


def test_filling_is_by_value_density() -> None:
    # one slot left after the most urgent: the dense candidate wins over the big cheap-value one
    cands = [cand(1, 0.1, new=1), cand(2, 9.0, new=10, value=2.0), cand(3, 9.0, new=2, value=2.0)]
    assert plan_batch(cands, 0.0, cost, Budget(1000, 2)).keys == (1, 3)


def test_a_member_never_loses_a_deadline_it_would_have_met() -> None:
    # alone, 1 finishes at 15 ms (deadline 20 ms); with 2 (20 tokens) it would finish at 35 ms
    cands = [cand(1, 0.020, new=5), cand(2, 5.0, new=20)]
    assert plan_batch(cands, 0.0, cost, BIG).keys == (1,)
    # members already late do not block others
    late = [cand(1, -1.0, new=5), cand(2, 5.0, new=20)]
    assert set(plan_batch(late, 0.0, cost, BIG).keys) == {1, 2}


def test_budgets_hold() -> None:
    cands = [cand(k, 9.0, new=40) for k in range(10)]
    plan = plan_batch(cands, 0.0, cost, Budget(max_tokens=100, max_items=8))
    assert len(plan.keys) == 2
    assert plan_batch(cands, 0.0, cost, Budget(max_tokens=10_000, max_items=3)).keys.__len__() == 3
    # a lone candidate bigger than the token budget still runs (alone): nothing waits forever
    assert plan_batch([cand(1, 9.0, new=500)], 0.0, cost, Budget(100, 8)).keys == (1,)


def test_no_starvation_as_time_passes() -> None:
    """A steady stream of fresh, valuable rounds cannot keep an old cheap one out: its deadline
    becomes the earliest and EDF takes it."""
    old = cand(0, 1.0, new=30, value=0.1)
    for step in range(100):
        now = step * 0.05
        fresh = [cand(1000 + step * 10 + i, now + 0.5, new=1, value=5.0, arrival=now) for i in range(10)]
        keys = plan_batch([old, *fresh], now, cost, Budget(max_tokens=40, max_items=4)).keys
        if 0 in keys:
            assert now <= 0.55  # taken as soon as it is the most urgent (fresh deadlines are now + 0.5)
            return
    raise AssertionError("the old round starved")


def test_queue_delay_counts_the_passes_ahead() -> None:
    queued = [cand(k, 0.1 * k, new=10) for k in range(1, 7)]  # 6 rounds, 2 per pass
    new = cand(99, 9.0, new=10)
    budget = Budget(max_tokens=1000, max_items=2)
    # three passes of 2 x 10 tokens (30 ms each) run before it, after the pass in progress (20 ms)
    assert abs(queue_delay(queued, new, 0.0, cost, budget, busy_until=0.020) - 0.110) < 1e-12
    urgent = cand(98, 0.0, new=10)
    assert queue_delay(queued, urgent, 0.0, cost, budget, busy_until=0.0) == 0.0
