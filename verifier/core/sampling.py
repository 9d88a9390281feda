"""Distributions and keyed randomness of speculative decoding: pure numpy, no I/O.

The words (round, gamma, draft tokens ``x_1..x_k``, proposal ``q_i``, target distribution
``p_i``, accepted ``m``, recovered, bonus and next token, committed, ...) and their symbols are
defined once, in docs/architecture.md#glossary; every module of Tandem uses them, one name per
concept.

Randomness is keyed by ``(seed, absolute position, stream)`` rather than drawn from a
sequential generator, so a seeded request is reproducible no matter how the tokens were
grouped into rounds, and the edge and the cloud never share a random stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: temperatures below this are greedy, on the edge and the verifier alike (vLLM's rule too):
#: logits divided by a temperature near the smallest float overflow to inf, and below 1e-5 the
#: tempered distribution is the argmax for any two logits that float32 tells apart
GREEDY_BELOW = 1e-5


def effective_temperature(temperature: float) -> float:
    """The temperature a request is served at: 0 (greedy) below ``GREEDY_BELOW``."""
    return 0.0 if temperature < GREEDY_BELOW else temperature


#: seeds are kept to 63 bits, on the edge (a request's seed, its choices' seeds) and in the keyed draws
SEED_MASK = (1 << 63) - 1


class Stream(IntEnum):
    """Independent random streams; each position draws at most one number per stream."""

    DRAFT = 1  # the edge sampling a draft token from its proposal
    ACCEPT = 2  # the verifier's acceptance test u < p/q
    NEXT = 3  # the verifier drawing the recovered or bonus token


def keyed_uniform(seed: int, position: int, stream: Stream) -> float:
    """A uniform number in [0, 1) that depends only on (seed, position, stream)."""
    rng = np.random.default_rng([seed & SEED_MASK, position, int(stream)])
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


def softmax(
    logits: npt.ArrayLike, temperature: float = 1.0, dtype: type[np.floating[Any]] = np.float64
) -> npt.NDArray[np.floating[Any]]:
    """Softmax over the last axis with temperature > 0, computed in ``dtype`` (float64 by
    default: acceptance compares probabilities; float32 where only speed matters)."""
    if not temperature > 0:
        raise ValueError("temperature must be > 0 for softmax")
    z = np.asarray(logits, dtype=dtype) / dtype(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.floating[Any]] = e / e.sum(axis=-1, keepdims=True)
    return out


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
    kept: FloatArray = np.where(keep, probs, 0.0)
    normalised: FloatArray = kept / kept.sum(axis=-1, keepdims=True)
    return normalised


def min_p_filter(probs: FloatArray, min_p: float) -> FloatArray:
    """Drop the tokens less likely than ``min_p`` times the most likely one, renormalised
    (vLLM's min_p). probs: [..., V]; min_p 0 returns probs unchanged."""
    if min_p <= 0.0:
        return probs
    kept: FloatArray = np.where(probs >= min_p * probs.max(axis=-1, keepdims=True), probs, 0.0)
    normalised: FloatArray = kept / kept.sum(axis=-1, keepdims=True)
    return normalised


def top_k_filter(probs: FloatArray, top_k: int) -> FloatArray:
    """Keep the ``top_k`` most likely tokens, renormalised; ties broken by token id (stable
    sort) as in ``top_p_filter``. top_k 0 (or >= V) returns probs unchanged."""
    if top_k <= 0 or top_k >= probs.shape[-1]:
        return probs
    order = np.argsort(-probs, axis=-1, kind="stable")
    keep = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :top_k], True, axis=-1)
    kept: FloatArray = np.where(keep, probs, 0.0)
    normalised: FloatArray = kept / kept.sum(axis=-1, keepdims=True)
    return normalised


def target_distribution(logits: npt.ArrayLike, temperature: float, top_p: float, top_k: int = 0,
                        min_p: float = 0.0) -> FloatArray:
    """The distribution a request samples from: softmax(logits / T), then min_p, top_k and
    top_p, in vLLM's order. T > 0. ``logits`` are the processed ones (``verifier.core.logits``)."""
    probs: FloatArray = softmax(logits, temperature).astype(np.float64, copy=False)
    return top_p_filter(top_k_filter(min_p_filter(probs, min_p), top_k), top_p)


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
