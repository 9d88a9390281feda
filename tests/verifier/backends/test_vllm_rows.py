"""The vLLM backend's row reading, without vLLM: which rows the prefix cache leaves
uninitialised, and how vLLM's log-prob entries become greedy-ready rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from verifier.backends.vllm_backend import dense_rows, rows_readable


@dataclass
class Entry:
    logprob: float


def test_rows_after_the_cached_boundary_are_readable() -> None:
    # 40 tokens, 5 rows wanted: positions 35..39; position p is computed iff p >= cached
    assert rows_readable(40, 5, 32)
    assert rows_readable(40, 5, 35)
    assert not rows_readable(40, 5, 36)  # the hit reached into the first wanted row
    assert rows_readable(40, 1, 39)  # the sampled token's row is always computed
    assert rows_readable(40, 0, 40)  # a prefill chunk reads nothing


def test_dense_rows_take_prompt_entries_then_the_sampled_token() -> None:
    prompt = [None, {5: Entry(-0.1)}, {7: Entry(-0.5), 3: Entry(-1.0)}, {2: Entry(-0.2)}, {9: Entry(-0.3)}]
    out = {4: Entry(-0.05)}
    rows = dense_rows(prompt, out, n_tokens=5, logits_rows=3, vocab_size=10)
    # rows of positions 2, 3 (prompt entries of tokens 3, 4) and 4 (the sampled token)
    assert rows.shape == (3, 10)
    assert np.argmax(rows, axis=-1).tolist() == [2, 9, 4]
    assert rows[0, 2] == pytest.approx(-0.2) and np.isneginf(rows[0, 5])


def test_a_missing_entry_is_an_error_not_a_guess() -> None:
    with pytest.raises(RuntimeError):
        dense_rows([None, None], {1: Entry(0.0)}, n_tokens=2, logits_rows=2, vocab_size=4)


def test_a_vllm_round_recomputes_the_contexts_partial_block() -> None:
    from types import SimpleNamespace

    from verifier.backends.vllm_backend import VllmBackend

    backend = SimpleNamespace(_block=32)
    assert VllmBackend.work_of(backend, 70, 5) == (5 + 6, 64)  # type: ignore[arg-type]
    assert VllmBackend.work_of(backend, 64, 5) == (5, 64)  # type: ignore[arg-type]
    assert VllmBackend.work_of(backend, 0, 40) == (40, 0)  # type: ignore[arg-type]
