"""Verification of one round: greedy acceptance and exact speculative rejection sampling.

Pure numpy. The words (draft tokens, proposal, accepted, recovered, bonus, next token) are
defined once, in docs/architecture.md#glossary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from verifier.core.sampling import FloatArray, SparseDist, Stream, keyed_uniform, sample_index


@dataclass(frozen=True)
class RoundOutcome:
    """The result of verifying one round: ``accepted`` draft tokens, then ``next_token_id``."""

    accepted: int
    next_token_id: int


def verify_greedy(draft_token_ids: list[int], target_logits: npt.NDArray[np.floating[Any]]) -> RoundOutcome:
    """Greedy verification (temperature 0).

    target_logits: [k+1, V] for k draft tokens; row i is the target's logits for the position
    of draft token i+1 (row k is the bonus position). Accept while x_i == argmax; the next
    token is the argmax at the first mismatch, or at row k when everything was accepted.
    """
    k = len(draft_token_ids)
    if target_logits.shape[0] != k + 1:
        raise ValueError("target_logits must have one row per draft token plus one")
    argmax = np.argmax(target_logits, axis=-1)
    for i, x in enumerate(draft_token_ids):
        if int(argmax[i]) != x:
            return RoundOutcome(accepted=i, next_token_id=int(argmax[i]))
    return RoundOutcome(accepted=k, next_token_id=int(argmax[k]))


def verify_sampled(
    draft_token_ids: list[int],
    proposals: list[SparseDist] | None,
    target_probs: FloatArray,
    seed: int,
    first_position: int,
) -> RoundOutcome:
    """Exact speculative rejection sampling (Leviathan et al. 2023; Chen et al. 2023).

    target_probs: [k+1, V], rows already transformed by temperature/top_p.
    proposals: one SparseDist per draft token, or None for id-only drafts (one-hot q).
    first_position: absolute sequence position of draft token 1 (keys the randomness).
    """
    k = len(draft_token_ids)
    if target_probs.shape[0] != k + 1:
        raise ValueError("target_probs must have one row per draft token plus one")
    if proposals is not None and len(proposals) != k:
        raise ValueError("one proposal per draft token is required")
    vocab = target_probs.shape[1]
    for i, x in enumerate(draft_token_ids):
        pos = first_position + i
        p = target_probs[i]
        if proposals is None:
            q_x = 1.0
        else:
            q_x = proposals[i].prob_of(x)
            if q_x <= 0:
                raise ValueError(f"draft token {x} is outside its own proposal")
        u = keyed_uniform(seed, pos, Stream.ACCEPT)
        if u * q_x < p[x]:  # u < p(x)/q(x)
            continue
        if proposals is None:
            residual = p.copy()
            residual[x] = 0.0
        else:
            residual = np.maximum(p - proposals[i].to_dense(vocab), 0.0)
        if not residual.sum() > 0:  # p <= q everywhere means p == q: rejection had prob 0
            residual = p
        token = sample_index(residual, keyed_uniform(seed, pos, Stream.NEXT))
        return RoundOutcome(accepted=i, next_token_id=token)
    bonus_pos = first_position + k
    token = sample_index(target_probs[k], keyed_uniform(seed, bonus_pos, Stream.NEXT))
    return RoundOutcome(accepted=k, next_token_id=token)
