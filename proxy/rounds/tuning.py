"""The dual threshold's (R1, R2) tuned online by Bayesian optimisation (PipeSD).

A point is a ``DualThresholdTrigger`` (R2 = ``per_token``, R1 = ``cumulative``). Requests
speculating with trigger ``tuned`` draft under the tuner's current point and measure it: every
``segment_tokens`` verified tokens (after the first answer, which carries the prefill), the
time per output token is one observation of that point. The next point comes from a Gaussian
process fitted to the observations and the expected improvement over the best one
(``proxy.rounds.bayes_search``, botorch, imported only when used); the first points are the configured
thresholds (today's fixed cut-off is a point of the search) and a few spread ones. When the
link's round trip or the acceptance moves by more than ``context_change`` from what they were
when the tuning began, the observations no longer describe this link: the tuning starts over
from the best point so far. When the search proposes the same place three times running, it has
settled: the best measured point stays and no search runs (each costs the edge CPU) until the
tuning starts over.

``ThresholdTuner`` is the bookkeeping (pure, thread-safe: requests record on the event loop,
the search runs in a worker thread); ``proxy.rounds.bayes_search.BayesianSearch`` the optimiser
behind it, the edge's only module that uses torch (botorch needs it; the `tune` extra).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proxy.rounds.bayes_search import BayesianSearch, Point
from proxy.rounds.rates import moved
from proxy.rounds.trigger import DualThresholdTrigger

log = logging.getLogger(__name__)

#: starting points after the configured one, around the usual cut-off (0.3, 0): the first fit
#: sees both directions of each threshold without spending segments on extreme pairs
SPREAD: tuple[Point, ...] = ((0.5, 0.0), (0.1, 0.0), (0.3, 0.3))


class Search(Protocol):
    """Where to look next, given (point, seconds per token) observations: lower is better."""

    def prepare(self) -> None:
        """Load what the search needs (blocking; done where a wait is expected, not mid-request)."""
        ...

    def next_point(self, observations: Sequence[tuple[Point, float]]) -> Point: ...


@dataclass
class ThresholdTuner:
    """The current point, the observations behind it, and when to search again."""

    start: Point  # the configured thresholds: the first point tried
    search: Search = field(default_factory=lambda: BayesianSearch())
    segment_tokens: int = 16  # verified tokens per observation
    window: int = 40  # observations kept (the oldest are dropped)
    context_change: float = 0.3
    settle: float = 0.05  # searches whose last three points lie this close together have settled
    observations: list[tuple[Point, float]] = field(default_factory=list)
    retunes: int = 0  # times the tuning started over (the link or the acceptance moved)
    _queue: list[Point] = field(default_factory=list)  # initial points still to try
    _current: Point = field(init=False)
    _context: tuple[float, float] | None = None  # (rtt_s, alpha) when the tuning began
    _searching: bool = False
    _searched: list[Point] = field(default_factory=list)  # the points the search proposed, newest last
    _settled: bool = False  # no more searches until the tuning starts over
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._queue = [self.start, *(p for p in SPREAD if p != self.start)]
        self._current = self._queue.pop(0)

    @property
    def current(self) -> Point:
        with self._lock:
            return self._current

    def trigger(self, point: Point) -> DualThresholdTrigger:
        return DualThresholdTrigger(per_token=point[0], cumulative=point[1])

    def best(self) -> Point | None:
        """The observed point with the lowest mean time per token."""
        with self._lock:
            sums: dict[Point, list[float]] = {}
            for p, v in self.observations:
                sums.setdefault(p, []).append(v)
        if not sums:
            return None
        return min(sums, key=lambda p: sum(sums[p]) / len(sums[p]))

    def observe(self, point: Point, seconds_per_token: float, rtt_s: float | None, alpha: float | None) -> bool:
        """One measured segment of ``point``. Returns whether a search should run now (the
        caller runs ``advance`` in a worker thread). Segments of a point that is no longer the
        current one still count (they measured it)."""
        if not math.isfinite(seconds_per_token) or seconds_per_token <= 0:
            return False
        restart = self._context_moved(rtt_s, alpha)
        best = self.best() if restart else None
        with self._lock:
            if restart:
                self.retunes += 1
                self.observations.clear()
                self._searched.clear()
                self._settled = False
                self._queue = [p for p in (best, *SPREAD) if p is not None]
                self._current = self._queue.pop(0)
                self._context = None
                return False
            if self._context is None and rtt_s is not None and alpha is not None:
                self._context = (rtt_s, alpha)
            self.observations.append((point, seconds_per_token))
            del self.observations[:-self.window]
            if point != self._current or self._searching or self._settled:
                return False
            if self._queue:
                self._current = self._queue.pop(0)
                return False
            self._searching = True
            return True

    def advance(self) -> None:
        """Search for the next point (blocking: a worker thread's job). A failing search keeps
        the current point and is logged."""
        with self._lock:
            seen = list(self.observations)
        try:
            point = self.search.next_point(seen) if len(seen) >= 2 else None
        except Exception:
            log.exception("threshold search failed; keeping the current thresholds")
            point = None
        best = self.best() if point is not None else None
        with self._lock:
            self._searching = False
            if point is None:
                return
            self._searched.append(point)
            recent = self._searched[-3:]
            if len(recent) == 3 and all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) <= self.settle
                                        for a in recent for b in recent):
                self._settled = True  # it keeps proposing the same place: stay at the best one measured
                point = best or point
            self._current = point

    @property
    def settled(self) -> bool:
        with self._lock:
            return self._settled

    def _context_moved(self, rtt_s: float | None, alpha: float | None) -> bool:
        with self._lock:
            then = self._context
        if then is None or rtt_s is None or alpha is None:
            return False
        return moved(rtt_s, then[0], self.context_change) or moved(alpha, then[1], self.context_change)


@dataclass
class SegmentClock:
    """One request's measurement of the tuner's points: time per verified token over segments
    of ``tuner.segment_tokens``; a segment restarts when the tuner's point changes under it."""

    tuner: ThresholdTuner
    point: Point | None = None
    t0: float = 0.0
    tokens: int = 0

    def verified(self, n: int, now: float, rtt_s: float | None, alpha: float | None,
                 run_search: Callable[[], None]) -> None:
        current = self.tuner.current
        if self.point != current:  # the first answer (it carries the prefill), or a new point
            self.point, self.t0, self.tokens = current, now, 0
            return
        self.tokens += n
        if self.tokens >= self.tuner.segment_tokens:
            if self.tuner.observe(self.point, (now - self.t0) / self.tokens, rtt_s, alpha):
                run_search()
            self.point, self.t0, self.tokens = self.tuner.current, now, 0
