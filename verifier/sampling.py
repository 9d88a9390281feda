"""Speculative sampling math: pure numpy, no I/O, no framework imports.

Words used throughout Tandem (one name per concept):

- *draft tokens* ``x_1..x_k``: the tokens the edge's draft model proposes in one round.
- *proposal* ``q_i``: the distribution the edge drew ``x_i`` from, sent sparsely (ids + probs).
  ``None`` means the drafter only gives ids; the verifier then treats ``q_i`` as one-hot at
  ``x_i``, which is still exact (REFERENCES.md, Leviathan et al. 2023, appendix).
- *target distribution* ``p_i``: the target model's distribution at the position of ``x_i``
  after temperature and top_p, the same transform the edge applied to its draft logits.
- *accepted*: the number ``m`` of leading draft tokens kept.
- *recovered token*: drawn from ``norm(max(0, p_{m+1} - q_{m+1}))`` at the first rejection.
- *bonus token*: drawn from ``p_{k+1}`` when all ``k`` draft tokens are accepted.
- *next token*: the recovered or the bonus token; every round yields exactly one.

Randomness is keyed by ``(seed, absolute position, stream)`` rather than drawn from a
sequential generator, so a seeded request is reproducible no matter how the tokens were
grouped into rounds, and the edge and the cloud never share a random stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_SEED_MASK = (1 << 63) - 1


class Stream(IntEnum):
    """Independent random streams; each position draws at most one number per stream."""

    DRAFT = 1  # the edge sampling a draft token from its proposal
    ACCEPT = 2  # the verifier's acceptance test u < p/q
    NEXT = 3  # the verifier drawing the recovered or bonus token


def keyed_uniform(seed: int, position: int, stream: Stream) -> float:
    """A uniform number in [0, 1) that depends only on (seed, position, stream)."""
    rng = np.random.default_rng([seed & _SEED_MASK, position, int(stream)])
    return float(rng.random())


@dataclass(frozen=True)
class SparseDist:
    """A probability distribution over a vocabulary, stored on its support only.

    ids: [n] distinct token ids; probs: [n] positive, summing to 1.
    """

    ids: IntArray
    probs: FloatArray

    def prob_of(self, token_id: int) -> float:
        hit = np.nonzero(self.ids == token_id)[0]
        return float(self.probs[hit[0]]) if hit.size else 0.0

    def to_dense(self, vocab_size: int) -> FloatArray:
        dense = np.zeros(vocab_size, dtype=np.float64)
        dense[self.ids] = self.probs
        return dense

    def validate(self, vocab_size: int) -> None:
        """Raise ValueError unless this is a proper distribution over [0, vocab_size)."""
        if self.ids.shape != self.probs.shape or self.ids.ndim != 1 or self.ids.size == 0:
            raise ValueError("proposal ids and probs must be non-empty lists of equal length")
        if np.any(self.ids < 0) or np.any(self.ids >= vocab_size):
            raise ValueError("proposal token id outside the vocabulary")
        if np.unique(self.ids).size != self.ids.size:
            raise ValueError("proposal token ids must be distinct")
        if np.any(~np.isfinite(self.probs)) or np.any(self.probs <= 0):
            raise ValueError("proposal probabilities must be positive and finite")
        if abs(float(self.probs.sum()) - 1.0) > 1e-3:
            raise ValueError("proposal probabilities must sum to 1")


def softmax(logits: npt.NDArray[np.floating], temperature: float = 1.0) -> FloatArray:
    """Softmax over the last axis in float64, with temperature > 0."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 for softmax")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_p_filter(probs: FloatArray, top_p: float) -> FloatArray:
    """Keep the smallest most-likely set whose mass reaches top_p, renormalised.

    probs: [..., V]. Ties are broken by token id (stable sort), so the edge and the cloud
    cut the same set from the same numbers. top_p >= 1 returns probs unchanged.
    """
    if top_p >= 1.0:
        return probs
    if top_p <= 0.0:
        raise ValueError("top_p must be in (0, 1]")
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=-1)
    cum = np.cumsum(sorted_probs, axis=-1)
    # keep a token if the mass strictly before it is < top_p (always keeps the first)
    keep_sorted = (cum - sorted_probs) < top_p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    out = np.where(keep, probs, 0.0)
    return out / out.sum(axis=-1, keepdims=True)


def target_distribution(
    logits: npt.NDArray[np.floating], temperature: float, top_p: float
) -> FloatArray:
    """The distribution a request samples from: softmax(logits / T), then top_p. T > 0."""
    return top_p_filter(softmax(logits, temperature), top_p)


def truncate_support(probs: FloatArray, max_support: int) -> SparseDist:
    """The top ``max_support`` entries of a dense distribution, renormalised.

    Used by the edge to build its proposal: any proposal is exact as long as the draft
    token is drawn from exactly the distribution that is sent, so the edge may cut the
    tail to keep the uplink to a few bytes per token.
    """
    nonzero = int(np.count_nonzero(probs))
    n = max(1, min(max_support, nonzero))
    ids = np.argsort(-probs, kind="stable")[:n]
    kept = probs[ids]
    return SparseDist(ids=ids.astype(np.int64), probs=kept / kept.sum())


def sample_index(probs: FloatArray, u: float) -> int:
    """Inverse-CDF draw from an unnormalised non-negative vector with one uniform u."""
    cdf = np.cumsum(probs)
    total = cdf[-1]
    if not total > 0:
        raise ValueError("cannot sample from a zero vector")
    idx = int(np.searchsorted(cdf, u * total, side="right"))
    # guard against u*total landing on the last edge by rounding
    idx = min(idx, probs.size - 1)
    while probs[idx] == 0 and idx > 0:
        idx -= 1
    return idx


def sample_sparse(dist: SparseDist, u: float) -> int:
    return int(dist.ids[sample_index(dist.probs, u)])


@dataclass(frozen=True)
class RoundOutcome:
    """The result of verifying one round: ``accepted`` draft tokens, then ``next_token``."""

    accepted: int
    next_token: int


def verify_greedy(draft_token_ids: list[int], target_logits: npt.NDArray[np.floating]) -> RoundOutcome:
    """Greedy verification (temperature 0).

    target_logits: [k+1, V]; row i is the target's logits for the position of draft token
    i+1 (row k is the bonus position). Accept while x_i == argmax; the next token is the
    argmax at the first mismatch, or at row k when everything was accepted.
    """
    k = len(draft_token_ids)
    if target_logits.shape[0] != k + 1:
        raise ValueError("target_logits must have one row per draft token plus one")
    argmax = np.argmax(target_logits, axis=-1)
    for i, x in enumerate(draft_token_ids):
        if int(argmax[i]) != x:
            return RoundOutcome(accepted=i, next_token=int(argmax[i]))
    return RoundOutcome(accepted=k, next_token=int(argmax[k]))


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
        return RoundOutcome(accepted=i, next_token=token)
    bonus_pos = first_position + k
    token = sample_index(target_probs[k], keyed_uniform(seed, bonus_pos, Stream.NEXT))
    return RoundOutcome(accepted=k, next_token=token)
