"""The vLLM backend's row reading, without vLLM: which rows the prefix cache leaves
uninitialised, how vLLM's log-prob entries become greedy-ready rows, and how its flat
whole-vocabulary log-probabilities become whole rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from verifier.backends.vllm_rows import ROW_REQUESTS_MAX, dense_rows, flat_row, row_prompt_lengths, rows_readable


@dataclass
class Entry:
    logprob: float


@dataclass
class Flat:
    start_indices: list[int]
    end_indices: list[int]
    token_ids: list[int]
    logprobs: list[float]


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
    assert VllmBackend.work_of(backend, 70, 5) == (5 + 6, 64, 0)  # type: ignore[arg-type]
    assert VllmBackend.work_of(backend, 64, 5) == (5, 64, 0)  # type: ignore[arg-type]
    assert VllmBackend.work_of(backend, 0, 40) == (40, 0, 0)  # type: ignore[arg-type]
    # whole rows: one request per row computes the tail and the new tokens up to its row, each a request
    assert VllmBackend.work_of(backend, 70, 5, 5) == (sum(range(7, 12)), 5 * 64, 5)  # type: ignore[arg-type]
    # many: one request over everything, no cache reads
    rows = ROW_REQUESTS_MAX + 1
    assert VllmBackend.work_of(backend, 70, rows, rows) == (70 + rows, 0, rows)  # type: ignore[arg-type]


def test_each_row_request_ends_where_its_row_predicts_the_next_token() -> None:
    # 10 tokens, 3 rows: positions 7, 8, 9, predicted after 8, 9 and 10 tokens
    assert row_prompt_lengths(10, 3) == [8, 9, 10]
    assert row_prompt_lengths(4, 4) == [1, 2, 3, 4]


def test_flat_rows_become_whole_rows_and_a_partial_one_is_an_error() -> None:
    flat = Flat([0, 4], [4, 9], [2, 0, 3, 1, 0, 1, 2, 3, 1], [-1.0, -2.0, -3.0, -0.5, -4.0, -0.1, -2.5, -3.5, -0.1])
    row = flat_row(flat, 1, 4)  # the second position; its sampled token (1) listed twice
    assert row.tolist() == pytest.approx([-4.0, -0.1, -2.5, -3.5])
    assert flat_row(flat, 0, 4).tolist() == pytest.approx([-2.0, -0.5, -1.0, -3.0])
    with pytest.raises(RuntimeError, match="3 of 5"):
        flat_row(Flat([0], [3], [0, 1, 2], [-1.0, -1.0, -1.0]), 0, 5)
