"""When a round goes to verification: the triggers that end a round before a draft token
(PipeSD's dual confidence threshold, WISP's rejection predictor), pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from verifier.core.codec import DraftToken
from verifier.core.predictor import AcceptancePredictor


class DraftTrigger(Protocol):
    """When a round goes to verification: asked for each new draft token, whether the round
    drafted so far should be sent before it (the token then starts the next round)."""

    @property
    def needs_features(self) -> bool:
        """Whether it reads ``DraftToken.features`` (the drafter then records them)."""
        ...

    def ends_round_before(self, token: DraftToken, round_so_far: Sequence[DraftToken]) -> bool:
        ...


@dataclass(frozen=True)
class DualThresholdTrigger:
    """PipeSD's dual threshold: end the round before token n when its confidence P(d_n) <=
    ``per_token`` or the product of the round's confidences through it, C_n, <= ``cumulative``
    (0 disables either). ``DualThresholdTrigger(t)`` is a plain confidence cut-off."""

    per_token: float
    cumulative: float = 0.0
    needs_features: bool = False

    def ends_round_before(self, token: DraftToken, round_so_far: Sequence[DraftToken]) -> bool:
        if token.confidence is None or not round_so_far:
            return False  # a model-free draft carries no confidence; a round is never empty by choice
        if self.per_token > 0 and token.confidence <= self.per_token:
            return True
        if self.cumulative > 0:
            c = token.confidence
            for d in round_so_far:
                c *= d.confidence if d.confidence is not None else 1.0
            return c <= self.cumulative
        return False


@dataclass(frozen=True)
class PredictorTrigger:
    """End the round before a token the rejection predictor gives less than ``min_accept``
    chance of acceptance (WISP's speculation controller)."""

    predictor: AcceptancePredictor
    min_accept: float
    needs_features: bool = True

    def ends_round_before(self, token: DraftToken, round_so_far: Sequence[DraftToken]) -> bool:
        if token.features is None or not round_so_far:
            return False
        return self.predictor.p_accept(token.features) < self.min_accept
