"""Prompt-lookup (n-gram) drafter: no model, proposes what followed the last n-gram the
last time it occurred in the context. Useful where the answer repeats the prompt
(summarisation, code edits, RAG). Id-only proposals: the verifier treats them as one-hot.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from verifier.core.codec import DraftToken


def lookup(context: Sequence[int], gamma: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to gamma tokens that followed the most recent earlier occurrence of the context's
    longest suffix n-gram (tried from max_ngram down to min_ngram)."""
    size = len(context)
    for g in range(min(max_ngram, size - 1), min_ngram - 1, -1):
        tail = list(context[size - g:])
        for start in range(size - g - 1, -1, -1):  # most recent match first
            if list(context[start:start + g]) == tail:
                follow = list(context[start + g: start + g + gamma])
                if follow:
                    return follow
    return []


class NgramDrafter(Drafter):
    standalone = False

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        self._max = max_ngram
        self._min = min_ngram

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        follow = lookup(context, 1, self._max, self._min)
        return DraftToken(follow[0], None) if follow else None

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        raise RuntimeError("the n-gram drafter cannot generate on its own (edge-only mode needs a model)")
