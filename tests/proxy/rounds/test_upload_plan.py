"""PipeSD's DP upload planner against brute force on small windows, its cost fit, the replan rule."""

from __future__ import annotations

import itertools
import random

import pytest

from proxy.rounds.upload_plan import CostFit, CostModel, UploadPlanner, plan_batches, plan_time


def compositions(n: int) -> list[list[int]]:
    """Every way to cut n tokens into ordered batches."""
    out = []
    for cuts in itertools.product((False, True), repeat=n - 1):
        sizes, run = [], 1
        for cut in cuts:
            if cut:
                sizes.append(run)
                run = 1
            else:
                run += 1
        out.append([*sizes, run])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_the_dp_plan_is_the_best_of_all_cuts(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 9)
    cost = CostModel(a=rng.choice((0.0, 0.002, 0.02, 0.1)), beta=rng.uniform(0, 0.01), g=rng.uniform(0.001, 0.03))
    sizes, t = plan_batches(n, cost)
    assert sum(sizes) == n and all(b > 0 for b in sizes)
    assert t == pytest.approx(plan_time(sizes, cost))
    assert t == pytest.approx(min(plan_time(c, cost) for c in compositions(n)))


def test_the_plan_by_hand() -> None:
    # free batches: send every token as soon as it is drafted
    assert plan_batches(4, CostModel(a=0.0, beta=0.001, g=0.01)) == ([1, 1, 1, 1], pytest.approx(0.041))
    # a batch overhead far above the draft time: one batch
    sizes, t = plan_batches(4, CostModel(a=0.5, beta=0.001, g=0.01))
    assert sizes == [4] and t == pytest.approx(0.04 + 0.5 + 0.004)
    assert plan_batches(0, CostModel(1, 1, 1)) == ([], 0.0)


def test_the_cost_fit_recovers_a_line_and_the_draft_time() -> None:
    fit = CostFit()
    assert fit.model() is None
    for size in (1, 2, 4, 3, 5, 2):
        fit.add_batch(size, 0.004 + 0.0005 * size)
        fit.add_draft(0.012)
    model = fit.model()
    assert model is not None
    assert (model.a, model.beta, model.g) == (pytest.approx(0.004), pytest.approx(0.0005), pytest.approx(0.012))


def test_the_planner_replans_only_when_the_model_moves_by_a_fifth() -> None:
    planner = UploadPlanner(window=6)
    assert planner.plan() == [6] and planner.replans == 0  # nothing measured yet
    for size in (1, 3, 6):
        planner.fit.add_batch(size, 0.001 + 0.0001 * size)
    planner.fit.add_draft(0.01)
    first = planner.plan()
    assert planner.replans == 1 and sum(first) == 6 and len(first) > 1  # cheap batches: send early
    planner.fit.add_draft(0.0105)  # g moves by 0.5%: the plan stands
    assert planner.plan() == first and planner.replans == 1
    for _ in range(30):  # the link gets expensive per batch: a moves far more than 20%
        planner.fit.add_batch(1, 0.2)
        planner.fit.add_batch(6, 0.2005)
    assert planner.plan() == [6] and planner.replans == 2
