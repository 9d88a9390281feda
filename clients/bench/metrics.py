"""Acceptance, defined once for every report of both harnesses (``tandem-bench``, ``tandem-load``).

The words are the glossary's (docs/architecture.md), counted over a request's rounds and
summed over requests before any ratio is taken (a pooled ratio, not a mean of per-request ratios):

- round: one verify round answered by the verifier (a stale answer, drafted on a token that was then
  rejected, is not counted). A cloud-only stream counts each of its chunks as a round that drafted
  nothing.
- drafted: draft tokens sent for verification in those rounds.
- accepted: draft tokens the verifier accepted (each round's accepted prefix).
- rejections: rounds that ended on a rejected draft token.

The figures:

- ``acceptance_rate`` = accepted / drafted: the share of drafted tokens that became output.
- ``accepted_per_round`` = accepted / rounds: draft tokens accepted per verify round.
- ``tokens_per_round`` = (accepted + rounds) / rounds: tokens committed per verify round (each round
  commits its accepted drafts and one token of the target's own, the correction or the bonus).
- ``alpha_per_token`` = accepted / (accepted + rejections): the per-token acceptance probability of
  the analytic bounds (``verifier.core.bounds.per_token_alpha``, the geometric model's estimate). It is
  not ``acceptance_rate``: that one also counts the drafts after a rejection, never tested, as failures.

Each figure is 0.0 where nothing was drafted (no speculation: no verify round to speak of).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from verifier.core import bounds


@dataclass(frozen=True)
class RoundCounts:
    """The counts every acceptance figure is taken from, summed over requests."""

    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> RoundCounts:
        """A request's counts from its ``tandem`` statistics (the edge's, same names)."""
        return cls(*(int(stats.get(k, 0)) for k in ("rounds", "drafted", "accepted", "rejections")))

    @classmethod
    def total(cls, counts: Iterable[RoundCounts]) -> RoundCounts:
        out = cls()
        for c in counts:
            out = out + c
        return out

    def __add__(self, other: RoundCounts) -> RoundCounts:
        return RoundCounts(self.rounds + other.rounds, self.drafted + other.drafted, self.accepted + other.accepted,
                           self.rejections + other.rejections)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def accepted_per_round(self) -> float:
        return self.accepted / self.rounds if self.rounds and self.drafted else 0.0

    @property
    def tokens_per_round(self) -> float:
        return (self.accepted + self.rounds) / self.rounds if self.rounds and self.drafted else 0.0

    @property
    def alpha_per_token(self) -> float:
        return bounds.per_token_alpha(self.accepted, self.rejections)

    def figures(self) -> dict[str, float]:
        """The four figures, rounded as the reports print them."""
        return {"acceptance_rate": round(self.acceptance_rate, 4),
                "accepted_per_round": round(self.accepted_per_round, 3),
                "tokens_per_round": round(self.tokens_per_round, 3),
                "alpha_per_token": round(self.alpha_per_token, 4)}
