"""llama.cpp (llama-cpp-python) draft model with its KV cache kept across rounds.

Each ``LlamaDrafter`` owns one llama context (one KV cache). Before drafting it finds the
longest common prefix between what its cache holds and the requested context, rolls the
cache back to it and evaluates only the new suffix: a rejected round costs a rollback,
never a re-evaluation of the whole context; a new request sharing a system prompt with
the previous one reuses it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama

from proxy.draft.base import Drafter
from verifier.core.drafting import DraftSampling, DraftToken, draw_draft_token, draw_standalone_token
from verifier.core.gguf import last_logits


class LlamaDrafter(Drafter):
    def __init__(self, llm: Llama) -> None:
        self._llm = llm
        self._logits: npt.NDArray[np.float32] | None = None  # logits after the cache's last token
        self.evaluated_tokens = 0  # counter for tests and stats

    def _cached_ids(self) -> npt.NDArray[np.intc]:
        return self._llm.input_ids[: self._llm.n_tokens]

    def sync(self, context: list[int]) -> npt.NDArray[np.float32]:
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

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        if len(context) >= self._llm.n_ctx():
            return None
        return draw_draft_token(sampling.processed(self.sync(context), context), sampling, position=len(context))

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return draw_standalone_token(sampling.processed(self.sync(context), context), sampling,
                                     position=len(context))
