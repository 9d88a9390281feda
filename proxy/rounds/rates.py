"""How fast each way of answering would go over this edge's link, from what it measured: pure.

Three paths serve a request losslessly: pipelined speculation, stop-and-wait speculation and
cloud streaming. Their rates follow the bounds of ``verifier.core.bounds`` once the edge knows
the round trip, the verifier's time per pass (a line in the rows it scores: one row is a cloud
decoding step), the draft time per token and the acceptance. Every estimate is an exponentially
weighted average, so it follows a link or a workload that changes. ``choose`` picks the fastest
path, keeping the current one unless another is faster by a margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from verifier.core import bounds

Path = Literal["pipelined", "stop_and_wait", "cloud"]
PATHS: tuple[Path, ...] = ("pipelined", "stop_and_wait", "cloud")


def moved(now: float, then: float, change: float) -> bool:
    """Whether an estimate ``now`` differs from ``then`` by more than ``change`` of ``then``."""
    return abs(now - then) > change * max(abs(then), 1e-9)


@dataclass
class Ewma:
    """An exponentially weighted mean; None until the first sample."""

    weight: float = 0.1
    value: float | None = None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else (1 - self.weight) * self.value + self.weight * x


@dataclass
class LineFit:
    """A decayed least-squares line ``y = c0 + c1 * x`` through the samples seen, its slope kept
    non-negative (a cost does not fall as the work grows). The verifier's pass time against the
    rows it scores (one row is a cloud decoding step); a batch's send time against its size."""

    decay: float = 0.95
    _n: float = 0.0
    _sx: float = 0.0
    _sy: float = 0.0
    _sxx: float = 0.0
    _sxy: float = 0.0

    def add(self, x: float, y: float) -> None:
        d = self.decay
        self._n = d * self._n + 1
        self._sx = d * self._sx + x
        self._sy = d * self._sy + y
        self._sxx = d * self._sxx + x * x
        self._sxy = d * self._sxy + x * y

    def slope(self) -> float:
        """0 until two different x were seen (nothing to tell a slope by)."""
        if self._n == 0:
            return 0.0
        mean_x, mean_y = self._sx / self._n, self._sy / self._n
        var = self._sxx / self._n - mean_x * mean_x
        return max(0.0, (self._sxy / self._n - mean_x * mean_y) / var) if var >= 1e-9 else 0.0

    def predict(self, x: float) -> float | None:
        if self._n == 0:
            return None
        mean_x, mean_y = self._sx / self._n, self._sy / self._n
        return max(0.0, mean_y + self.slope() * (x - mean_x))


@dataclass
class LinkEstimates:
    """What one edge has measured of its verifier and link."""

    rtt_s: Ewma = field(default_factory=Ewma)  # a round's trip minus the verifier's time for it
    draft_s: Ewma = field(default_factory=Ewma)  # draft time per token
    passes: LineFit = field(default_factory=LineFit)  # verifier time (queue + compute) per pass, by rows
    cloud_step_s: Ewma = field(default_factory=Ewma)  # measured on cloud-only requests
    accepted: float = 0.0  # decayed counts for the per-token acceptance
    rejections: float = 0.0
    decay: float = 0.98
    rounds: int = 0

    def observe_round(self, drafted: int, accepted: int, trip_s: float, verifier_s: float) -> None:
        """A round that went alone (nothing else in flight), the only kind whose trip tells the
        link's and the pass's time apart from a wait behind others: its timings and acceptance."""
        self.rounds += 1
        self.rtt_s.add(max(0.0, trip_s - verifier_s))
        self.passes.add(drafted + 1, verifier_s)
        self.observe_acceptance(drafted, accepted)

    def observe_acceptance(self, drafted: int, accepted: int) -> None:
        """Any verified round's outcome (pipelined or not: acceptance does not depend on timing)."""
        self.accepted = self.decay * self.accepted + accepted
        self.rejections = self.decay * self.rejections + int(accepted < drafted)

    def observe_agreement(self, agreed: int, missed: int, most: int = 16) -> None:
        """Shadow drafting's count over a stretch of cloud streaming (``proxy.decoding.shadow``):
        greedy guesses the cloud's tokens agreed with and those they missed, as accepted and
        rejected draft tokens, in one decay step and weighing at most ``most`` tokens (a long
        stretch of one request does not outweigh what the edge learnt from all the others)."""
        scale = min(1.0, most / (agreed + missed)) if agreed + missed else 0.0
        self.accepted = self.decay * self.accepted + agreed * scale
        self.rejections = self.decay * self.rejections + missed * scale

    def observe_draft(self, seconds: float) -> None:
        self.draft_s.add(seconds)

    def observe_cloud_step(self, seconds: float) -> None:
        self.cloud_step_s.add(seconds)

    @property
    def alpha(self) -> float:
        return bounds.per_token_alpha(self.accepted, self.rejections)

    def cloud_step(self, gamma: int) -> float | None:
        """A cloud decoding step: measured on cloud-only requests, else the pass-time line at one
        row, but never below a row's share of a round's pass (the line may reach 0 at one row
        when it was fitted on rounds alone; a cloud step is a pass of its own)."""
        if self.cloud_step_s.value is not None:
            return self.cloud_step_s.value
        one, full = self.passes.predict(1), self.passes.predict(gamma + 1)
        if one is None or full is None:
            return None
        return max(one, full / (gamma + 1))

    def rates(self, gamma: int, remaining: int, inflight: int = 1, alpha: float | None = None,
              started: Path | None = None) -> dict[Path, float] | None:
        """Tokens per second of each path over the rest of a request (``remaining`` tokens), or
        None before the first verified round; pipelined with up to ``inflight`` rounds out;
        ``alpha``: the request's own per-token acceptance (``request_alpha``) instead of the edge's.
        A path pays its start unless it is the one ``started`` (streaming already): the cloud one
        round trip, speculation its first round's trip beyond the pipeline's steady period."""
        rtt, draft = self.rtt_s.value, self.draft_s.value
        verify = self.passes.predict(gamma + 1)
        step = self.cloud_step(gamma)
        if rtt is None or draft is None or verify is None or step is None:
            return None
        alpha = min(self.alpha if alpha is None else alpha, 0.999)
        n = max(1, remaining)
        steady: dict[Path, float] = {
            "pipelined": bounds.pipelined_tokens_per_s(alpha, gamma, draft, rtt, verify, inflight),
            "stop_and_wait": bounds.stop_and_wait_tokens_per_s(alpha, gamma, draft, rtt, verify),
        }
        first_round_s = gamma * draft + rtt + verify  # before a speculation path has any token
        per_round = bounds.expected_tokens_per_round(alpha, gamma)
        rates: dict[Path, float] = {
            path: rate if path == started else bounds.started_tokens_per_s(
                n, rate, max(0.0, first_round_s - per_round / rate))
            for path, rate in steady.items()
        }
        cloud_start_s = 0.0 if started == "cloud" else rtt
        rates["cloud"] = bounds.cloud_tokens_per_s(n, step, cloud_start_s) if step > 0 else float("inf")
        return rates


def request_alpha(edge_alpha: float, accepted: int, rejected: int, prior_tokens: float = 8.0) -> float:
    """One request's per-token acceptance: its own ``accepted`` and ``rejected`` draft tokens (or
    shadow guesses) with the edge's estimate as a prior worth ``prior_tokens`` tokens, so a few
    tokens move it a little and many make it the request's own."""
    return (accepted + prior_tokens * edge_alpha) / (accepted + rejected + prior_tokens)


@dataclass
class Explorer:
    """Mode auto's exploration: every ``every``-th request in a row that the estimates send to
    the cloud speculates anyway, so the acceptance estimate stays current; such a request (and
    one that starts with no estimates) verifies ``rounds`` rounds before it may hand over, or one
    unlucky first round would keep every later request in the cloud."""

    every: int
    rounds: int
    streak: int = 0  # requests in a row the estimates sent to the cloud

    def explore(self, to_cloud: bool) -> bool:
        self.streak = self.streak + 1 if to_cloud else 0
        if self.streak >= self.every:
            self.streak = 0
            return True
        return False


def choose(rates: dict[Path, float], current: Path | None, margin: float = 0.1) -> Path:
    """The fastest path; the current one stays unless another is faster by ``margin``."""
    best = max(PATHS, key=lambda p: rates[p])
    if current is not None and rates[best] <= rates[current] * (1 + margin):
        return current
    return best
