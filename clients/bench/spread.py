"""A figure measured once per repeat: its median and spread, and ratios taken repeat by repeat.

Both harnesses summarise repeats with these (``tandem-bench --repeats``, ``tandem-load --repeats``):
one number per repeat, then the median, the interquartile range (quartiles interpolated between
the ordered values, numpy's default) and the minimum and maximum. A ratio of two modes is taken per
repeat (the same prompts in the same repeat) and then summarised the same way, never as a ratio of
two medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """One figure across repeats."""

    values: tuple[float, ...]  # one per repeat, in repeat order
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self, digits: int = 3) -> dict[str, float | list[float]]:
        return {"median": round(self.median, digits), "q1": round(self.q1, digits), "q3": round(self.q3, digits),
                "iqr": round(self.iqr, digits), "min": round(self.min, digits), "max": round(self.max, digits),
                "values": [round(v, digits) for v in self.values]}

    def cell(self, digits: int = 2) -> str:
        """``median [min-max]`` as the Markdown tables print it; the median alone for one repeat."""
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.min:.{digits}f}-{self.max:.{digits}f}]"


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` starting at the ``turn``-th (mod their number): over the turns each goes first
    in turn, so no setting always runs first, on a machine still busy with what ran before."""
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def balanced(items: Sequence[T], turn: int) -> list[T]:
    """The ``turn``-th order of a carry-over balanced design (Williams): over every ``n`` turns
    (``2n`` when ``n``, the number of items, is odd) each item goes first, and each item directly
    follows every other item, equally often. A rotation alone makes each item follow the same one
    on most turns, so what one setting leaves behind (vLLM's server keeps polling its core for a
    while after a request) lands on the same neighbour every time."""
    n = len(items)
    if n < 2:
        return list(items)
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...: every difference between neighbours once
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    shift = turn % n
    order = [items[(i + shift) % n] for i in first]
    if n % 2 and (turn // n) % 2:  # odd n: the mirrored square balances the other half of the pairs
        order.reverse()
    return order


def spread(values: Sequence[float]) -> Spread:
    """Median, quartiles and range of ``values`` (all 0 for none)."""
    if not values:
        return Spread((), 0.0, 0.0, 0.0, 0.0, 0.0)
    xs = [float(v) for v in values]
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(tuple(xs), statistics.median(xs), q1, q3, min(xs), max(xs))


def ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """``values[i] / baseline[i]`` repeat by repeat; a repeat whose baseline is 0 is left out."""
    if len(values) != len(baseline):
        raise ValueError(f"{len(values)} repeats against a baseline of {len(baseline)}")
    return [v / b for v, b in zip(values, baseline) if b]
