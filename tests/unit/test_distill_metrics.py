from __future__ import annotations

import pytest

from verifier.distill.metrics import greedy_matches, mean_accepted_length


def test_greedy_matches() -> None:
    assert greedy_matches([1, 2, 3], [1, 5, 3]) == [True, False, True]
    with pytest.raises(ValueError):
        greedy_matches([1], [1, 2])


def test_mean_accepted_length_by_hand() -> None:
    # rounds: [T,T,F] -> 2 accepted, skip the correction; [T,T,T,T] -> 4 (gamma cap), bonus; [T] -> 1 at the end
    matches = [True, True, False, True, True, True, True, True, True]
    assert mean_accepted_length(matches, 4) == pytest.approx((2 + 4 + 1) / 3)


def test_mean_accepted_length_extremes() -> None:
    assert mean_accepted_length([False] * 6, 4) == 0.0
    assert mean_accepted_length([True] * 10, 4) == pytest.approx(4 * 2 / 2)  # rounds cover 5 positions each
    assert mean_accepted_length([], 4) == 0.0
