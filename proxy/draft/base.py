"""The drafter interface: a tiny abstract class, one instance per concurrent sequence."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from verifier.sampling import SparseDist, Stream, keyed_uniform, sample_index, target_distribution, truncate_support


@dataclass(frozen=True)
class DraftSampling:
    """How the edge draws draft tokens. temperature 0: argmax, id-only proposals."""

    temperature: float
    top_p: float
    seed: int
    proposal_support: int = 32
    #: a model drafter ends its round before a token it is less sure of than this (0: never)
    confidence_threshold: float = 0.0


@dataclass(frozen=True)
class DraftToken:
    token_id: int
    proposal: SparseDist | None  # the q it was drawn from; None for id-only drafts


def confidence(logits: np.ndarray) -> float:
    """The draft model's confidence in its next token: its top-1 probability at temperature 1.

    The same measure for greedy and sampled requests; it predicts whether the target will
    accept the token, so a round is sent for verification once it drops."""
    z = np.asarray(logits, dtype=np.float32)  # float32: 0.03 ms over 49k logits, float64 0.33
    return float(1.0 / np.exp(z - z.max()).sum())


def choose_from_logits(logits: np.ndarray, sampling: DraftSampling, position: int) -> DraftToken:
    """Pick a draft token from draft logits: argmax when greedy, else a draw from the
    top-``proposal_support`` cut of the tempered/top_p distribution, which is sent up as q."""
    if sampling.temperature == 0:
        return DraftToken(int(np.argmax(logits)), None)
    dist = target_distribution(logits, sampling.temperature, sampling.top_p)
    q = truncate_support(dist, sampling.proposal_support)
    u = keyed_uniform(sampling.seed, position, Stream.DRAFT)
    return DraftToken(int(q.ids[sample_index(q.probs, u)]), q)


def sample_full(logits: np.ndarray, sampling: DraftSampling, position: int) -> int:
    """Edge-only decoding: a draw from the draft's own full distribution."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    dist = target_distribution(logits, sampling.temperature, sampling.top_p)
    return sample_index(dist, keyed_uniform(sampling.seed, position, Stream.NEXT))


class Drafter(ABC):
    """Proposes tokens continuing ``context``. Keeps whatever state it likes between calls
    (a KV cache) but must give the same answer as if it had started from scratch."""

    #: whether next_token works, i.e. the drafter can answer alone (edge-only mode)
    standalone: bool = True

    @abstractmethod
    def propose(self, context: list[int], n: int, sampling: DraftSampling,
                stop_token_ids: frozenset[int] = frozenset()) -> list[DraftToken]:
        """Up to n draft tokens after context; stops early after a stop token."""

    @abstractmethod
    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        """One token from the drafter's own distribution (edge-only mode)."""
