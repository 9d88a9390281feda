"""The data writer's token choice and top-k extraction (verifier/distill/data_llama.py)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from verifier.distill.data_llama import next_token, top_k_desc


def test_top_k_desc_is_the_k_largest_in_order() -> None:
    logits = np.array([0.5, 3.0, -1.0, 2.0, 7.0, 2.5], dtype=np.float32)
    ids, vals = top_k_desc(logits, 3)
    assert ids.tolist() == [4, 1, 5]
    assert vals.tolist() == [7.0, 3.0, 2.5]


def test_greedy_is_argmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=1000).astype(np.float32)
    assert next_token(logits, 0.0, rng) == int(np.argmax(logits))


def test_sampling_follows_the_tempered_softmax() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    temperature = 0.8
    p = np.exp(logits / temperature)
    p /= p.sum()
    rng = np.random.default_rng(1)
    n = 20000
    counts = np.bincount([next_token(logits, temperature, rng) for _ in range(n)], minlength=4)
    assert stats.chisquare(counts, p * n).pvalue > 1e-3
    # and a wrong temperature is detected by the same test
    assert stats.chisquare(counts, np.exp(logits) / np.exp(logits).sum() * n).pvalue < 1e-3


def test_same_seed_same_draws() -> None:
    logits = np.linspace(0, 3, 50)
    a = [next_token(logits, 1.0, np.random.default_rng(7)) for _ in range(5)]
    b = [next_token(logits, 1.0, np.random.default_rng(7)) for _ in range(5)]
    assert a == b


def test_clean_request_strips_labels_and_drops_fragments() -> None:
    from verifier.distill.prompts import clean_request

    assert clean_request('  "How do I keep my basil alive in winter?"  ') == "How do I keep my basil alive in winter?"
    assert clean_request("Question: What is a good budget for a week in Rome?") == \
        "What is a good budget for a week in Rome?"
    assert clean_request("Sure!") is None and clean_request("") is None
