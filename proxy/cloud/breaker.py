"""When the edge stops trying its verifier: a circuit breaker and the backoff between tries.

Pure (the caller passes the time). After ``threshold`` failures in a row the breaker opens:
for ``cooldown_s`` nobody tries the verifier and requests are served by the edge's cloud-loss
policy. Then it is half open: one request tries; its success closes the breaker, its failure
opens it again for another cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    threshold: int = 3
    cooldown_s: float = 10.0
    failures: int = 0  # in a row
    opened_at: float | None = None
    _trial_at: float | None = None  # when the half-open trial was let through

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        return "open" if now - self.opened_at < self.cooldown_s else "half_open"

    def allows(self, now: float) -> bool:
        """Whether a request may try the verifier now (one trial at a time when half open; a
        trial that never reports back frees the slot after another cooldown)."""
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open":
            return False
        if self._trial_at is not None and now - self._trial_at < self.cooldown_s:
            return False
        self._trial_at = now
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_at = None

    def failed(self, now: float) -> None:
        self.failures += 1
        self._trial_at = None
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = now


def backoff_s(attempt: int, base_s: float = 0.1, cap_s: float = 2.0) -> float:
    """The wait before reconnect attempt ``attempt`` (0, 1, ...): doubling from ``base_s``, at most ``cap_s``."""
    return min(cap_s, base_s * (2 ** min(attempt, 30)))
