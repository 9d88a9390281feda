"""The link model, pure: when does a chunk sent at time t arrive?

One direction of a link is a FIFO serialisation queue (bandwidth, possibly changing over
time) followed by a propagation delay with jitter. A TCP stream never reorders, so a chunk
never arrives before the one sent ahead of it. During an outage nothing is transmitted:
chunks wait and go out when the link is back ("stall"), as TCP retransmission would deliver
them; the relay implements the other outage mode ("reset": connections are cut). A lost chunk
(``loss``) arrives one retransmission timeout late, and everything behind it waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RateStep:
    at_s: float  # offset within the schedule period
    mbps: float


@dataclass(frozen=True)
class Outage:
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class DirectionSpec:
    delay_ms: float = 0.0  # one way
    jitter_ms: float = 0.0  # uniform in [-jitter, +jitter], never below zero delay
    mbps: float | None = None  # None: unlimited
    schedule: tuple[RateStep, ...] = ()  # piecewise-constant rate, repeating every period_s
    period_s: float | None = None
    loss: float = 0.0  # chance a chunk is lost once: it arrives a retransmission timeout late
    rto_ms: float = 200.0  # TCP's minimum retransmission timeout on Linux

    def rate_bytes_per_s(self, t: float) -> float | None:
        if self.schedule:
            period = self.period_s or (self.schedule[-1].at_s + 1e9)
            offset = t % period
            mbps = self.schedule[0].mbps
            for step in self.schedule:
                if step.at_s <= offset:
                    mbps = step.mbps
            return mbps * 1e6 / 8
        return None if self.mbps is None else self.mbps * 1e6 / 8


@dataclass
class Direction:
    """Delivery-time bookkeeping for one direction; times are seconds since the link's start."""

    spec: DirectionSpec
    outages: tuple[Outage, ...] = ()
    seed: int = 0
    _free_at: float = 0.0
    _last_delivery: float = 0.0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def down_at(self, t: float) -> Outage | None:
        for o in self.outages:
            if o.start_s <= t < o.end_s:
                return o
        return None

    def schedule(self, now: float, nbytes: int) -> float:
        """Delivery time of nbytes handed to the link at ``now``."""
        start = max(now, self._free_at)
        outage = self.down_at(start)
        while outage is not None:
            start = outage.end_s
            outage = self.down_at(start)
        rate = self.spec.rate_bytes_per_s(start)
        self._free_at = start + (nbytes / rate if rate else 0.0)
        jitter = self._rng.uniform(-self.spec.jitter_ms, self.spec.jitter_ms) if self.spec.jitter_ms else 0.0
        delay = max(0.0, self.spec.delay_ms + jitter) / 1000.0
        if self.spec.loss and self._rng.random() < self.spec.loss:
            delay += self.spec.rto_ms / 1000.0  # retransmitted; TCP holds what follows behind it
        delivery = max(self._free_at + delay, self._last_delivery)
        self._last_delivery = delivery
        return delivery
