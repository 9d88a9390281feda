"""The target's logprobs of verified tokens, with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from verifier.core.logprobs import TokenLogprob, log_softmax, token_logprobs


def test_logprobs_and_top_alternatives() -> None:
    rows = np.log(np.array([[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.3, 0.4]]))
    out = token_logprobs(rows, [1, 0], top_n=2)
    assert out[0].token_id == 1 and out[0].logprob == pytest.approx(np.log(0.25))
    assert [i for i, _ in out[0].top] == [0, 1] and out[0].top[0][1] == pytest.approx(np.log(0.5))
    assert [i for i, _ in out[1].top] == [3, 2] and out[1].logprob == pytest.approx(np.log(0.1))
    ties = token_logprobs(np.log(np.array([[0.125, 0.375, 0.125, 0.375]])), [0], top_n=3)[0]
    assert [i for i, _ in ties.top] == [1, 3, 0]  # ties broken by token id
    assert token_logprobs(rows, [1, 0], top_n=0)[0] == TokenLogprob(1, pytest.approx(np.log(0.25)), ())


def test_logits_need_not_be_normalised_and_rows_must_match() -> None:
    logits = np.array([[3.0, 1.0, -2.0]], dtype=np.float32)
    assert np.allclose(np.exp(log_softmax(logits)).sum(), 1.0)
    assert token_logprobs(logits + 100, [2], 1)[0].logprob == pytest.approx(token_logprobs(logits, [2], 1)[0].logprob)
    with pytest.raises(ValueError):
        token_logprobs(logits, [1, 2], 1)
    with pytest.raises(ValueError):
        token_logprobs(logits, [1], 21)
