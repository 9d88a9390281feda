"""Draft draws and the draft confidence that cuts a round short (top-1 probability at T=1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxy.draft.draws import DraftSampling, confidence, draw_draft_token, draw_standalone_token
from verifier.core.sampling import target_distribution


def test_confidence_is_the_top_probability() -> None:
    assert confidence(np.zeros(2)) == pytest.approx(0.5)
    assert confidence(np.array([math.log(3.0), 0.0])) == pytest.approx(0.75)
    assert confidence(np.zeros(49152)) == pytest.approx(1 / 49152)


def test_confidence_is_stable_for_huge_logits() -> None:
    assert confidence(np.array([1e4, 0.0, -1e4], dtype=np.float32)) == pytest.approx(1.0)
    assert confidence(np.array([1e4, 1e4], dtype=np.float32)) == pytest.approx(0.5)


def test_greedy_draws_are_the_argmax_with_no_proposal() -> None:
    logits = np.array([0.1, 3.0, -1.0, 2.9])
    token = draw_draft_token(logits, DraftSampling(0.0, 1.0, seed=0), position=5)
    assert token.token_id == 1 and token.proposal is None
    assert draw_standalone_token(logits, DraftSampling(0.0, 1.0, seed=0), position=5) == 1


def test_sampled_draft_comes_from_the_proposal_it_carries() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    sampling = DraftSampling(1.0, 1.0, seed=3, proposal_support=2)
    counts = np.zeros(4)
    for position in range(4000):
        token = draw_draft_token(logits, sampling, position)
        assert token.proposal is not None and list(token.proposal.ids) == [0, 1]
        np.testing.assert_allclose(token.proposal.probs, [0.5 / 0.8, 0.3 / 0.8])
        counts[token.token_id] += 1
    assert counts[2] == counts[3] == 0  # outside the proposal: never drawn
    assert abs(counts[0] / 4000 - 0.625) < 0.03


def test_standalone_draws_follow_the_full_distribution() -> None:
    logits = np.array([1.0, 0.0, -1.0])
    sampling = DraftSampling(0.7, 1.0, seed=9)
    draws = np.bincount([draw_standalone_token(logits, sampling, pos) for pos in range(6000)], minlength=3)
    expected = target_distribution(logits, 0.7, 1.0)
    np.testing.assert_allclose(draws / 6000, expected, atol=0.03)
