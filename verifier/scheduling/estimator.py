"""Verification-time estimator: batch time from context lengths and new-token counts, fitted
online from measured batches. Pure numpy.

Model: ``t = c0 + c1 * items + c2 * new_tokens + c3 * attended / 1000 + c4 * separate_rows``,
where ``attended`` sums, over the batch's items, new tokens x (cached context + new tokens): the
linear layers cost per new token, attention per (new token, attended token) pair, every pass and
every item has a fixed overhead, and a row a backend computes in a request of its own (vLLM's
whole rows) costs that request and its shipping. Least squares over a window of recent batches,
coefficients kept non-negative; until enough batches are seen, the prior coefficients answer,
and a coefficient whose feature the window never saw (no separate rows yet) keeps its prior.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BatchShape:
    """new_tokens[i], context_tokens[i]: the new and the already-cached tokens of item i;
    separate_rows[i]: its rows computed in requests of their own (empty: none)."""

    new_tokens: tuple[int, ...]
    context_tokens: tuple[int, ...]
    separate_rows: tuple[int, ...] = ()

    @classmethod
    def of(cls, items: Sequence[Sequence[int]]) -> BatchShape:
        """From (new tokens, context tokens[, separate rows]) items."""
        return cls(tuple(item[0] for item in items), tuple(item[1] for item in items),
                   tuple(item[2] if len(item) > 2 else 0 for item in items))

    def features(self) -> npt.NDArray[np.float64]:
        attended = sum(n * (c + n) for n, c in zip(self.new_tokens, self.context_tokens, strict=True))
        return np.array([1.0, len(self.new_tokens), sum(self.new_tokens), attended / 1000.0,
                         sum(self.separate_rows)])


#: a CPU prior, in seconds: a pass, an item, a new token, 1000 attended pairs, a separate row (a
#: request of its own, the whole vocabulary shipped: the costliest unit); the fit replaces it
CPU_PRIOR = (0.060, 0.005, 0.006, 0.05, 0.03)


class VerifyTimeEstimator:
    def __init__(self, prior: Sequence[float] = CPU_PRIOR, window: int = 256, min_fit: int = 8) -> None:
        self.coef = np.asarray(prior, dtype=np.float64)
        self._prior = self.coef.copy()
        self._window = window
        self._min_fit = min_fit
        self._x: deque[npt.NDArray[np.float64]] = deque(maxlen=window)
        self._y: deque[float] = deque(maxlen=window)
        self._errors: deque[float] = deque(maxlen=window)

    def predict(self, shape: BatchShape) -> float:
        """Predicted seconds for a batch of this shape (0 for an empty batch)."""
        if not shape.new_tokens:
            return 0.0
        return float(shape.features() @ self.coef)

    def observe(self, shape: BatchShape, seconds: float) -> None:
        """Record a measured batch: its error against the prediction made without it, then refit."""
        predicted = self.predict(shape)
        if seconds > 0:
            self._errors.append(abs(predicted - seconds) / seconds)
        self._x.append(shape.features())
        self._y.append(seconds)
        if len(self._y) >= self._min_fit:
            x = np.stack(self._x)
            seen = x.any(axis=0)  # a feature always 0 in the window tells nothing of its coefficient
            self.coef = self._prior.copy()
            self.coef[seen] = fit_nonnegative(x[:, seen], np.asarray(self._y))

    def forget_errors(self) -> None:
        """Drop the recorded errors, keeping the fit (after calibration passes: the reported error
        is then the served batches')."""
        self._errors.clear()

    @property
    def observed(self) -> int:
        return len(self._y)

    def median_relative_error(self) -> float | None:
        """Median |predicted - measured| / measured over the recent window, each prediction made
        before its batch was seen; None before any batch."""
        return statistics.median(self._errors) if self._errors else None


def fit_nonnegative(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], ridge: float = 1e-9) -> npt.NDArray[
        np.float64]:
    """Least squares with every coefficient >= 0: drop the most negative one and refit until none is.
    (A time cannot fall as the batch grows; a negative fit is noise in a narrow window.)"""
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sub = x[:, active]
        gram = sub.T @ sub + ridge * np.eye(len(active))
        sol = np.linalg.solve(gram, sub.T @ y)
        if (sol >= 0).all():
            coef[:] = 0.0
            coef[active] = sol
            return coef
        active.pop(int(np.argmin(sol)))
    return coef


def calibration_shapes(passes: int, max_context: int, max_batch_tokens: int) -> list[tuple[int, int, int]]:
    """``passes`` (items, context, new tokens) round shapes that vary every feature of the model
    (items, new tokens, attended pairs) independently enough for a fit: items 1-8, 1-9 new tokens,
    contexts up to 480, each kept within the context limit and one pass's token budget."""
    items, news, contexts = (1, 4, 2, 8), (5, 1, 9, 3), (32, 480, 160, 320, 96)
    out = []
    for i in range(passes):
        new = max(1, min(news[i % len(news)], max_batch_tokens, max_context - 2))
        n = max(1, min(items[i % len(items)], max_batch_tokens // new))
        context = max(1, min(contexts[i % len(contexts)], max_context - new - 1))
        out.append((n, context, new))
    return out
