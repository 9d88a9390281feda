"""What a request does to a model's logits before temperature: pure numpy, framework-free.

``LogitsProcessing`` turns the raw logits at a position into the request's logits using
nothing but the sequence before that position (the prompt and the output so far), so the
edge (on its draft logits) and the verifier (on the target's) apply the very same function
and speculative verification stays exact: the target distribution a round is checked
against is the target's *with* the penalties, and so is the output.

The semantics are vLLM's (``SamplingParams``), in vLLM's order:

1. ``logit_bias``: added to the logits of the tokens named (OpenAI: -100..100);
   ``min_tokens``: while fewer than ``min_tokens`` tokens are output, ``stop_token_ids``
   are masked (-inf), so the generation cannot end early;
2. ``repetition_penalty`` r (HF/CTRL): every token seen in the prompt or the output has its
   logit divided by r when positive, multiplied by r when not;
3. ``frequency_penalty`` f and ``presence_penalty`` p (OpenAI): a token output c times so
   far loses ``c * f + (c > 0) * p`` (the prompt does not count).

Greedy decoding takes the argmax of the processed logits; sampling applies temperature and
the truncations (``verifier.core.sampling.target_distribution``) after them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatRows = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class LogitsProcessing:
    """A request's logits processing (neutral by default: ``active`` is False)."""

    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    min_tokens: int = 0
    stop_token_ids: frozenset[int] = frozenset()  # the tokens min_tokens holds back

    @property
    def active(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0
                    or self.logit_bias or (self.min_tokens > 0 and self.stop_token_ids))

    def apply(self, logits: npt.ArrayLike, prompt: Sequence[int], output: Sequence[int]) -> FloatRows:
        """The processed logits [V] at the position after ``prompt + output`` (a new array)."""
        row: FloatRows = self.apply_rows(np.asarray(logits)[None, :], prompt, output, [])[0]
        return row

    def apply_rows(self, logits: npt.ArrayLike, prompt: Sequence[int], output: Sequence[int],
                   draft_token_ids: Sequence[int]) -> FloatRows:
        """Processed logits of a verify round: ``logits`` [k+1, V] (or fewer rows), row i at the
        position after ``prompt + output + draft_token_ids[:i]``. Returns float32 rows for
        float32 input (a new array; the input is never modified)."""
        rows = np.array(logits, dtype=np.result_type(np.asarray(logits).dtype, np.float32), copy=True)
        if not self.active:
            return rows
        vocab = rows.shape[-1]
        counts = np.bincount(np.asarray(output, dtype=np.int64), minlength=vocab)[:vocab].astype(rows.dtype)
        seen = np.zeros(vocab, dtype=bool)
        if self.repetition_penalty != 1.0:
            seen[np.asarray(prompt, dtype=np.int64)] = True
            seen[np.asarray(output, dtype=np.int64)] = True
        bias_ids = np.fromiter(self.logit_bias.keys(), dtype=np.int64, count=len(self.logit_bias))
        bias_values = np.fromiter(self.logit_bias.values(), dtype=rows.dtype, count=len(self.logit_bias))
        stops = np.fromiter(self.stop_token_ids, dtype=np.int64, count=len(self.stop_token_ids))
        produced = len(output)
        for i in range(rows.shape[0]):
            if i > 0:  # row i follows draft token i
                token = int(draft_token_ids[i - 1])
                counts[token] += 1
                seen[token] |= self.repetition_penalty != 1.0
                produced += 1
            row = rows[i]
            if bias_ids.size:
                row[bias_ids] += bias_values
            if produced < self.min_tokens and stops.size:
                row[stops] = -np.inf
            if self.repetition_penalty != 1.0:
                r = self.repetition_penalty
                row[seen] = np.where(row[seen] > 0, row[seen] / r, row[seen] * r)
            if self.frequency_penalty or self.presence_penalty:
                row -= counts * self.frequency_penalty + (counts > 0) * self.presence_penalty
        return rows
