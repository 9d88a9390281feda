"""How the edge draws draft tokens and how sure its draft model is of them: pure numpy.

The edge must draw each draft token from exactly the proposal q it sends up, with the same
temperature/top_p transform the verifier applies to the target (the words are the glossary's,
docs/architecture.md); then rejection sampling on the verifier is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from verifier.core.codec import DraftToken
from verifier.core.grammar import Constraint
from verifier.core.logits import LogitsProcessing
from verifier.core.predictor import draft_features
from verifier.core.sampling import (
    Stream,
    keyed_uniform,
    sample_index,
    softmax,
    target_distribution,
    truncate_support,
)

#: tokens of the sparse proposal q the edge sends per draft token when sampling
DEFAULT_PROPOSAL_SUPPORT = 16


@dataclass(frozen=True)
class DraftSampling:
    """How the edge draws draft tokens. temperature 0: argmax, id-only proposals. The logits
    processing, top_k and min_p are the request's, as the verifier applies them to the target."""

    temperature: float
    top_p: float
    seed: int
    proposal_support: int = DEFAULT_PROPOSAL_SUPPORT
    #: keep each draft token's features (for the round log and the rejection predictor)
    record_features: bool = False
    top_k: int = 0
    min_p: float = 0.0
    processing: LogitsProcessing = field(default_factory=LogitsProcessing)
    output_start: int = 0  # where the output begins in a drafter's context (the penalties count from there)
    constraint: Constraint | None = None  # the grammar the output must match (the request's own state)

    def processed(self, logits: npt.NDArray[np.float32], context: Sequence[int]) -> npt.NDArray[np.float32]:
        """A drafter's raw logits after ``context``, processed and masked as the request asks (the
        same functions the verifier applies to the target's)."""
        out = logits
        if self.processing.active:
            out = self.processing.apply(logits, context[:self.output_start], context[self.output_start:])
            out = out.astype(np.float32, copy=False)
        if self.constraint is not None:
            allowed = self.constraint.allowed(context[self.output_start:])
            if allowed is not None and allowed.any():
                out = out.copy() if out is logits else out
                out[~allowed[: out.shape[-1]]] = -np.inf
        return out


def confidence(logits: npt.ArrayLike) -> float:
    """The draft model's confidence in its next token: its top-1 probability at temperature 1.

    The same measure for greedy and sampled requests; it predicts whether the target will
    accept the token, so a round is sent for verification once it drops. Computed in float32,
    several times faster than float64 over a whole vocabulary."""
    return float(softmax(logits, dtype=np.float32).max())


def draw_draft_token(logits: npt.ArrayLike, sampling: DraftSampling, position: int) -> DraftToken:
    """A draft token from draft logits, with the draft's confidence: argmax when greedy, else a
    draw from the top-``proposal_support`` cut of the tempered/top_p distribution, sent up as q."""
    features = draft_features(logits) if sampling.record_features else None
    conf = features[0] if features is not None else confidence(logits)
    if sampling.temperature == 0:
        return DraftToken(int(np.argmax(logits)), None, features, conf)
    dist = target_distribution(logits, sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p)
    q = truncate_support(dist, sampling.proposal_support)
    u = keyed_uniform(sampling.seed, position, Stream.DRAFT)
    return DraftToken(int(q.ids[sample_index(q.probs, u)]), q, features, conf)


def draw_standalone_token(logits: npt.ArrayLike, sampling: DraftSampling, position: int) -> int:
    """Edge-only decoding: a draw from the draft's own full distribution."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    dist = target_distribution(logits, sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p)
    return sample_index(dist, keyed_uniform(sampling.seed, position, Stream.NEXT))
