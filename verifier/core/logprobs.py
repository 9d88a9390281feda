"""The target's log-probabilities of the tokens it verified: pure numpy.

Reported as OpenAI's ``logprobs``: for each output token, its log-probability under the
target and the ``top_n`` most likely tokens at its position. The distribution is the
target's raw one (the log-softmax of its logits, before penalties, temperature and
truncation), as vLLM reports by default (``logprobs_mode="raw_logprobs"``): it says how sure
the model was, whatever the request's sampling did with that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: the most alternatives one token may carry (OpenAI's top_logprobs limit)
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One output token's log-probability and its position's ``top`` alternatives (id, logprob),
    most likely first (ties by token id)."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def log_softmax(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Log-softmax over the last axis in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    out: npt.NDArray[np.float64] = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def token_logprobs(logits: npt.NDArray[np.floating[Any]], token_ids: Sequence[int], top_n: int) -> list[TokenLogprob]:
    """``logits`` [m, V]: row i is the position of ``token_ids[i]``. Each token's logprob, with
    the ``top_n`` (0..MAX_TOP_LOGPROBS) best alternatives of its row."""
    if logits.shape[0] != len(token_ids):
        raise ValueError("one row of logits per token is required")
    if not 0 <= top_n <= MAX_TOP_LOGPROBS:
        raise ValueError(f"top_n must be between 0 and {MAX_TOP_LOGPROBS}")
    out = []
    for row, token in zip(log_softmax(logits), token_ids):
        top: tuple[tuple[int, float], ...] = ()
        if top_n:
            best = np.argpartition(-row, top_n - 1)[:top_n] if top_n < row.size else np.arange(row.size)
            ids = best[np.lexsort((best, -row[best]))]  # most likely first, ties by token id
            top = tuple((int(i), float(row[i])) for i in ids)
        out.append(TokenLogprob(int(token), float(row[token]), top))
    return out
