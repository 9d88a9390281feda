"""The logits processing both sides apply: numbers by hand, transformers' processors as an
independent oracle, and the round form (one row per draft position) equal to the one-row form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import MinNewTokensLengthLogitsProcessor, RepetitionPenaltyLogitsProcessor

from verifier.core.logits import LogitsProcessing
from verifier.core.sampling import min_p_filter, target_distribution, top_k_filter

LOGITS = np.array([2.0, -1.0, 0.5, 3.0, -2.0], dtype=np.float32)


def test_neutral_processing_is_inactive_and_changes_nothing() -> None:
    neutral = LogitsProcessing()
    assert not neutral.active and not LogitsProcessing(min_tokens=3).active  # no stop tokens to hold back
    out = neutral.apply(LOGITS, [0, 1], [3])
    assert np.array_equal(out, LOGITS) and out is not LOGITS


def test_frequency_and_presence_count_the_output_only() -> None:
    proc = LogitsProcessing(presence_penalty=0.5, frequency_penalty=0.25)
    out = proc.apply(LOGITS, prompt=[1, 1, 4], output=[3, 3, 0])
    # token 3 twice: 3 - 2*0.25 - 0.5; token 0 once: 2 - 0.25 - 0.5; the prompt's 1 and 4 untouched
    assert np.allclose(out, [1.25, -1.0, 0.5, 2.0, -2.0])


def test_repetition_penalty_divides_positive_and_multiplies_negative_over_prompt_and_output() -> None:
    out = LogitsProcessing(repetition_penalty=2.0).apply(LOGITS, prompt=[1], output=[3])
    assert np.allclose(out, [2.0, -2.0, 0.5, 1.5, -2.0])


def test_logit_bias_and_min_tokens() -> None:
    proc = LogitsProcessing(logit_bias={2: 10.0, 4: -100.0}, min_tokens=2, stop_token_ids=frozenset({3}))
    assert np.allclose(proc.apply(LOGITS, [0], [1]), [2.0, -1.0, 10.5, -np.inf, -102.0])
    assert np.allclose(proc.apply(LOGITS, [0], [1, 1]), [2.0, -1.0, 10.5, 3.0, -102.0])  # min_tokens reached


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_transformers_processors(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = 50
    logits = rng.normal(0, 3, size=vocab).astype(np.float32)
    prompt = rng.integers(0, vocab, 12).tolist()
    output = rng.integers(0, vocab, 7).tolist()
    ids = torch.tensor([prompt + output])
    ours = LogitsProcessing(repetition_penalty=1.7).apply(logits, prompt, output)
    theirs = RepetitionPenaltyLogitsProcessor(1.7)(ids, torch.tensor(logits[None, :]))[0].numpy()
    assert np.allclose(ours, theirs)
    for min_new in (5, 7, 9):
        ours = LogitsProcessing(min_tokens=min_new, stop_token_ids=frozenset({4, 9})).apply(logits, prompt, output)
        theirs = MinNewTokensLengthLogitsProcessor(len(prompt), min_new, [4, 9])(
            ids, torch.tensor(logits[None, :]))[0].numpy()
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("seed", range(5))
def test_round_rows_equal_one_position_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab, k = 40, 6
    rows = rng.normal(0, 2, size=(k + 1, vocab)).astype(np.float32)
    prompt, output = rng.integers(0, vocab, 9).tolist(), rng.integers(0, vocab, 4).tolist()
    draft = rng.integers(0, vocab, k).tolist()
    proc = LogitsProcessing(0.4, 0.3, 1.3, {1: 5.0, 7: -3.0}, min_tokens=7, stop_token_ids=frozenset({0, 2}))
    together = proc.apply_rows(rows, prompt, output, draft)
    assert together.dtype == np.float32 and np.array_equal(rows, rows.copy())
    for i in range(k + 1):
        assert np.allclose(together[i], proc.apply(rows[i], prompt, output + draft[:i]))


def test_min_p_and_top_k_truncate_like_vllm() -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert np.allclose(min_p_filter(p, 0.5), [0.625, 0.375, 0, 0])  # below 0.5 * 0.5 dropped
    assert np.allclose(min_p_filter(p, 0.0), p)
    assert np.allclose(top_k_filter(p, 2), [0.625, 0.375, 0, 0])
    assert np.allclose(top_k_filter(np.full(4, 0.25), 3), [1 / 3, 1 / 3, 1 / 3, 0])  # ties by token id
    assert np.allclose(top_k_filter(p, 0), p) and np.allclose(top_k_filter(p, 9), p)
    # min_p, then top_k, then top_p
    # min_p 0.2 keeps 0.5, 0.3, 0.15 (0.526, 0.316, 0.158 renormalised); top_p then cuts after the mass before a
    # token reaches it
    assert np.allclose(target_distribution(np.log(p), 1.0, top_p=0.5, top_k=3, min_p=0.2), [1.0, 0, 0, 0])
    assert np.allclose(target_distribution(np.log(p), 1.0, top_p=0.6, top_k=3, min_p=0.2), [0.625, 0.375, 0, 0])
    assert np.allclose(target_distribution(np.log(p), 1.0, top_p=1.0, top_k=1, min_p=0.0), [1.0, 0, 0, 0])
