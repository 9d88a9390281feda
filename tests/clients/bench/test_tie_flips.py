"""The tie-flip count of ``clients.bench.tie_flips``, without vLLM: where two greedy runs part
and the single run's top-2 margin there."""

from __future__ import annotations

import math

import pytest

from clients.bench.tie_flips import Flips, first_flip, margin
from verifier.core.logprobs import TokenLogprob


def entry(top1: float, top2: float) -> TokenLogprob:
    return TokenLogprob(5, top1, ((5, top1), (9, top2)))


def test_the_margin_is_top1_minus_top2() -> None:
    assert margin(entry(-0.5, -0.52)) == pytest.approx(0.02)
    assert math.isinf(margin(TokenLogprob(5, -0.1, ((5, -0.1),))))


def test_only_the_first_difference_counts_and_the_tokens_up_to_it() -> None:
    flips = Flips()
    entries = [entry(-0.1, -3.0), entry(-0.7, -0.71), entry(-0.2, -2.0), entry(-0.2, -2.0)]
    first_flip([1, 2, 3, 4], [1, 7, 8, 9], entries, flips)
    assert flips.compared == 2 and flips.margins == [pytest.approx(0.01)]
    first_flip([1, 2], [1, 2], entries, flips)  # no flip: both compared
    assert flips.compared == 4 and len(flips.margins) == 1
    assert flips.row("batched") == "| batched | 4 | 1 | 250.00 | 0.0100 |"
