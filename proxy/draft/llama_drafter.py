"""llama.cpp (llama-cpp-python) draft model with its KV cache kept across rounds.

Each ``LlamaDrafter`` owns one llama context (one KV cache). Before drafting it finds the
longest common prefix between what its cache holds and the requested context, rolls the
cache back to it and evaluates only the new suffix: a rejected round costs a rollback,
never a re-evaluation of the whole context; a new request sharing a system prompt with
the previous one reuses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from llama_cpp import Llama

from proxy.draft.base import Drafter, DraftSampling, DraftToken, choose_from_logits, confidence, sample_full


def load_llama(path: str | Path, n_ctx: int, threads: int | None) -> Llama:
    return Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=min(512, n_ctx),
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )


def last_logits(llm: Llama) -> np.ndarray:
    """A copy of the logits after the last evaluated token."""
    raw = llm._ctx.get_logits_ith(-1)  # pinned llama-cpp-python 0.3.36 API
    return np.ctypeslib.as_array(raw, shape=(llm.n_vocab(),)).copy()


class LlamaDrafter(Drafter):
    def __init__(self, llm: Llama) -> None:
        self._llm = llm
        self._logits: np.ndarray | None = None  # logits after the cache's last token
        self.evaluated_tokens = 0  # counter for tests and stats

    def _cached_ids(self) -> np.ndarray:
        return self._llm.input_ids[: self._llm.n_tokens]

    def sync(self, context: list[int]) -> np.ndarray:
        """Make the cache hold exactly ``context``; return the logits after it."""
        if not context:
            raise ValueError("context must not be empty")
        if len(context) > self._llm.n_ctx():
            raise ValueError("context longer than the draft model's window")
        cached = self._cached_ids()
        n = min(len(cached), len(context))
        ctx = np.asarray(context[:n], dtype=cached.dtype)
        mismatch = np.nonzero(cached[:n] != ctx)[0]
        common = int(mismatch[0]) if mismatch.size else n
        if common == len(context) == len(cached) and self._logits is not None:
            return self._logits
        common = min(common, len(context) - 1)  # evaluate at least one token to get logits
        self._llm.n_tokens = common  # eval() drops the cache beyond n_tokens first
        suffix = context[common:]
        self._llm.eval(suffix)
        self.evaluated_tokens += len(suffix)
        self._logits = last_logits(self._llm)
        return self._logits

    def propose(self, context: list[int], n: int, sampling: DraftSampling,
                stop_token_ids: frozenset[int] = frozenset()) -> list[DraftToken]:
        drafted: list[DraftToken] = []
        ctx = list(context)
        limit = self._llm.n_ctx()
        for _ in range(n):
            if len(ctx) >= limit:
                break
            logits = self.sync(ctx)
            if sampling.confidence_threshold > 0 and confidence(logits) < sampling.confidence_threshold:
                break  # the target would likely reject it: verify what we have
            token = choose_from_logits(logits, sampling, position=len(ctx))
            drafted.append(token)
            ctx.append(token.token_id)
            if token.token_id in stop_token_ids:
                break
        return drafted

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return sample_full(self.sync(context), sampling, position=len(context))
