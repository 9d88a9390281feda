"""SLO-aware batch policy (WISP): which queued rounds go into the next verification pass.

Pure: candidates in, chosen keys out, with the estimator passed as a function.

1. Earliest deadline first: the most urgent candidate always goes in (no candidate waits
   forever: as time passes its deadline becomes the earliest).
2. Then fill by value density: expected committed tokens per second of added verification
   time, most valuable first.
3. Every admission is checked against the estimator: a candidate joins only if the batch,
   with it, still finishes before the deadline of every member that would have met its
   deadline without it, and only within the batch's token and item budgets.

``queue_delay`` predicts how long a new round would wait under this policy; the scheduler
refuses a round (a retryable overload answer) when that exceeds its bound, instead of letting
the queue grow without end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from verifier.scheduling.estimator import BatchShape

Predict = Callable[[BatchShape], float]


@dataclass(frozen=True)
class Candidate:
    key: int
    arrival: float  # seconds, the scheduler's clock
    deadline: float  # seconds, same clock
    new_tokens: int
    context_tokens: int
    value: float  # expected committed tokens if verified now
    separate_rows: int = 0  # rows the backend computes in requests of their own


@dataclass(frozen=True)
class BatchPlan:
    keys: tuple[int, ...]
    predicted_s: float


@dataclass(frozen=True)
class Budget:
    max_tokens: int  # new tokens in one pass
    max_items: int  # rounds (and prefill chunks) in one pass


def _shape(members: Sequence[Candidate]) -> BatchShape:
    return BatchShape.of([(c.new_tokens, c.context_tokens, c.separate_rows) for c in members])


def _edf(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.deadline, c.arrival, c.key))


def plan_batch(candidates: Sequence[Candidate], now: float, predict: Predict, budget: Budget) -> BatchPlan:
    """The next batch. Empty only when there are no candidates."""
    if not candidates:
        return BatchPlan((), 0.0)
    ordered = _edf(candidates)
    chosen = [ordered[0]]
    tokens = ordered[0].new_tokens
    predicted = predict(_shape(chosen))
    rest = ordered[1:]
    while rest and len(chosen) < budget.max_items:
        best: tuple[float, Candidate, float] | None = None
        for c in rest:
            if tokens + c.new_tokens > budget.max_tokens:
                continue
            with_c = predict(_shape([*chosen, c]))
            if not _keeps_deadlines(chosen, now, predicted, with_c):
                continue
            density = c.value / max(with_c - predicted, 1e-9)
            if best is None or density > best[0]:
                best = (density, c, with_c)
        if best is None:
            break
        _, pick, predicted = best
        chosen.append(pick)
        tokens += pick.new_tokens
        rest.remove(pick)
    return BatchPlan(tuple(c.key for c in chosen), predicted)


def _keeps_deadlines(chosen: Sequence[Candidate], now: float, before_s: float, after_s: float) -> bool:
    """Adding ``new`` is allowed unless it makes a member miss a deadline it would have met."""
    finish_before, finish_after = now + before_s, now + after_s
    for c in chosen:
        if finish_before <= c.deadline < finish_after:
            return False
    return True


def queue_delay(queued: Sequence[Candidate], new: Candidate, now: float, predict: Predict, budget: Budget,
                busy_until: float) -> float:
    """Predicted seconds before ``new`` starts being verified if it joins the queue now: the
    passes EDF packing would run before it, after the pass in progress (until ``busy_until``)."""
    ahead = _edf([*queued, new])
    delay = max(0.0, busy_until - now)
    batch: list[Candidate] = []
    tokens = 0
    for c in ahead:
        if batch and (len(batch) >= budget.max_items or tokens + c.new_tokens > budget.max_tokens):
            delay += predict(_shape(batch))
            batch, tokens = [], 0
        if c is new:
            return delay
        batch.append(c)
        tokens += c.new_tokens
    return delay
