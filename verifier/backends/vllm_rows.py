"""The row route's arithmetic on vLLM (pure: numpy over vLLM's outputs): a session's state as
its token list, the requests one batch item becomes, what they cost, and their log-probabilities
read back as dense rows (``verifier.backends.vllm_backend`` sends the requests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from verifier.backends.base import SequenceState, Work


class TokenState(SequenceState):
    """A session's state on vLLM: the tokens its KV would hold (vLLM's prefix cache holds them)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)


class LogprobEntry(Protocol):
    logprob: float


RowLogprobs = Mapping[int, LogprobEntry]


#: an item asking for at most this many whole rows gets one request per row; more: one request
#: with whole-vocabulary prompt logprobs
ROW_REQUESTS_MAX = 16


@dataclass(frozen=True)
class ItemRequest:
    """One item of a batch: the whole sequence, the rows wanted and whether they must be whole."""

    token_ids: list[int]
    logits_rows: int
    whole_rows: bool = False


class FlatRows(Protocol):
    """vLLM's ``FlatLogprobs``: every position's entries back to back."""

    start_indices: list[int]
    end_indices: list[int]
    token_ids: list[int]
    logprobs: list[float]


def flat_row(flat: FlatRows, position: int, vocab_size: int) -> npt.NDArray[np.float32]:
    """A whole row [vocab] from the entries of one position of vLLM's flat logprobs; a row
    that does not cover the vocabulary is an error (whole rows were asked for)."""
    start, end = flat.start_indices[position], flat.end_indices[position]
    row = np.full(vocab_size, -np.inf, dtype=np.float32)
    ids = np.asarray(flat.token_ids[start:end], dtype=np.int64)
    row[ids] = np.asarray(flat.logprobs[start:end], dtype=np.float32)
    if np.isneginf(row).any():
        raise RuntimeError(f"vLLM returned {np.isfinite(row).sum()} of {vocab_size} log-probabilities for a whole row")
    return row


def row_prompt_lengths(n_tokens: int, logits_rows: int) -> list[int]:
    """The prompt length of each one-row request: the row of position p comes with the token
    sampled after the first p + 1 tokens."""
    return [n_tokens - logits_rows + 1 + r for r in range(logits_rows)]


def rows_readable(n_tokens: int, logits_rows: int, num_cached_tokens: int) -> bool:
    """Whether every wanted row was computed, not read from the prefix cache.

    The last ``logits_rows`` rows predict tokens ``n-r+1 .. n``; row of position p (which
    predicts token p+1) is computed iff p >= num_cached_tokens. The last row is the sampled
    token's, always computed.
    """
    return logits_rows == 0 or n_tokens - logits_rows >= num_cached_tokens


def dense_rows(prompt_rows: Sequence[RowLogprobs | None], output_row: RowLogprobs | None, n_tokens: int,
               logits_rows: int, vocab_size: int) -> npt.NDArray[np.float32]:
    """[logits_rows, vocab] with each row's known log-probabilities and -inf elsewhere.

    prompt_rows[i] is vLLM's prompt-logprob entry of token i (given tokens < i); the row of
    position p is prompt_rows[p + 1] for p < n-1, and the sampled token's entry for p = n-1.
    """
    out = np.full((logits_rows, vocab_size), -np.inf, dtype=np.float32)
    for r in range(logits_rows):
        position = n_tokens - logits_rows + r
        entry = output_row if position == n_tokens - 1 else prompt_rows[position + 1]
        if not entry:
            raise RuntimeError(f"vLLM returned no log-probabilities for position {position}")
        for token_id, lp in entry.items():
            out[r, token_id] = lp.logprob
    return out


def row_work(block: int, context_tokens: int, new_tokens: int, whole_rows: int = 0) -> Work:
    """``TargetBackend.work_of`` on vLLM, whose prefix cache holds whole blocks of ``block``
    tokens only: a round recomputes the context's last partial block; whole rows by one request
    per row compute that tail and the new tokens up to each row, each row a request of its own;
    more by whole prompt logprobs compute everything."""
    tail = context_tokens % block
    cached = context_tokens - tail
    if whole_rows > ROW_REQUESTS_MAX:
        return Work(context_tokens + new_tokens, 0, whole_rows)
    if whole_rows:
        lengths = row_prompt_lengths(context_tokens + new_tokens, whole_rows)
        return Work(sum(length - cached for length in lengths), cached * whole_rows, whole_rows)
    return Work(new_tokens + tail, cached)
