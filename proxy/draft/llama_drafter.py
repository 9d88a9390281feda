"""llama.cpp (llama-cpp-python) draft model with its KV cache kept across rounds.

Each ``LlamaDrafter`` owns one llama context (one KV cache). Before drafting it finds the
longest common prefix between what its cache holds and the requested context, rolls the
cache back to it and evaluates only the new suffix: a rejected round costs a rollback,
never a re-evaluation of the whole context; a new request sharing a system prompt with
the previous one reuses it.

The roll-back is exact, but llama.cpp's CPU kernels compute a position evaluated alone (a
drafted token, a correction) differently from one evaluated with others (a prompt): on
AVX2 the logits differ by up to ~1 (top-1 unchanged in what we measured), by less on
AVX-512; any batch of two or more gives the same rows. So that a seeded request's proposals
(and with them its sampled output) do not depend on what the drafter did before, a request
starts from what a fresh drafter would hold: it reuses only cached positions that were
evaluated in batches of two or more, and evaluates its prompt in such batches. Within a request,
a context that the cache already holds whole (a round drafted again after the verifier was lost,
before the rest of its drafts are rolled back) gets the logits kept from when its last position
was evaluated, not a re-evaluation of that position alone: the draft after a resume is the one
the uninterrupted request drafted, bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from llama_cpp import Llama

from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling, draw_draft_token, draw_standalone_token
from verifier.core.codec import DraftToken
from verifier.core.gguf import last_logits


def batches(tokens: list[int], size: int) -> list[list[int]]:
    """``tokens`` in pieces of at most ``size``, none of them a single token unless ``tokens`` is
    one (llama.cpp's own split at ``n_batch`` can leave the last token alone)."""
    if len(tokens) <= size:
        return [tokens]
    cuts = list(range(0, len(tokens), size))
    if len(tokens) - cuts[-1] == 1:
        cuts[-1] -= 1
    return [tokens[a:b] for a, b in zip(cuts, [*cuts[1:], len(tokens)], strict=True)]


KEPT_ENDS = 8  # logits kept for the ends of the latest evaluations of two or more tokens


class LlamaDrafter(Drafter):
    def __init__(self, llm: Llama) -> None:
        self._llm = llm
        self._logits: npt.NDArray[np.float32] | None = None  # logits after the cache's last token
        self.evaluated_tokens = 0  # counter for tests and stats
        self._batched = 0  # cached positions [0, _batched) were all evaluated in batches of two or more
        self._starting = True  # the next sync begins a request (module docstring)
        self._ends: dict[int, npt.NDArray[np.float32]] = {}  # n -> logits after the cache's first n (batch of 2+)

    def begin(self) -> None:
        self._starting = True
        self._ends.clear()  # a request reuses only what a fresh start gives (module docstring)

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
        if self._starting:  # as a fresh start: batched positions only, the prompt's rest in a batch of 2+
            self._starting = False
            common = max(0, min(common, self._batched, len(context) - 2))
        elif common == len(context) == len(cached) and self._logits is not None:
            return self._logits
        elif common == len(context) and (kept := self._ends.get(common)) is not None:
            self._roll_back(common)  # the logits as first evaluated: re-evaluating the last token alone would differ
            self._logits = kept
            return kept
        common = min(common, len(context) - 1)  # evaluate at least one token to get logits
        self._roll_back(common)
        suffix = context[common:]
        for chunk in batches(suffix, self._llm.n_batch):
            self._llm.eval(chunk)
        if len(suffix) > 1 and self._batched == common:
            self._batched = len(context)
        self.evaluated_tokens += len(suffix)
        self._logits = last_logits(self._llm)
        self._logits.flags.writeable = False
        if len(suffix) > 1:  # a last token evaluated alone gives the same logits alone again: none kept
            self._ends[len(context)] = self._logits
            while len(self._ends) > KEPT_ENDS:
                del self._ends[min(self._ends)]
        return self._logits

    def _roll_back(self, n: int) -> None:
        """Keep the cache's first ``n`` positions (eval() drops the cache beyond n_tokens first)."""
        self._llm.n_tokens = n
        self._batched = min(self._batched, n)
        for end in [e for e in self._ends if e > n]:
            del self._ends[end]

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        if len(context) >= self._llm.n_ctx():
            return None
        return draw_draft_token(sampling.processed(self.sync(context), context), sampling, position=len(context))

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return draw_standalone_token(sampling.processed(self.sync(context), context), sampling,
                                     position=len(context))
