"""PipeSD's token-batch upload plan: where to cut a window of draft tokens into batches, pure.

Cost model: drafting token i takes ``g`` (token i is ready at ``i * g``); sending a batch of b
tokens takes ``a + beta * b`` on a link that carries one batch at a time. A batch can leave once
its last token is drafted and the previous batch has gone. The plan minimises when the last
batch has arrived:

    T[i] = min over j <= i of  max(T[j - 1], i * g) + a + (i - j + 1) * beta,   T[0] = 0

``CostModel`` is refitted online from measured batches (least squares of time on size) and the
plan is redone when a parameter moves by more than ``replan_change`` (20%).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.rounds.rates import LineFit, moved


@dataclass(frozen=True)
class CostModel:
    a: float  # per-batch overhead (s)
    beta: float  # per-token transfer time (s)
    g: float  # draft time per token (s)

    def moved_from(self, other: CostModel, change: float) -> bool:
        """Whether any parameter differs from ``other``'s by more than ``change`` (relative)."""
        return any(moved(x, y, change) for x, y in ((self.a, other.a), (self.beta, other.beta), (self.g, other.g)))


def plan_batches(n: int, cost: CostModel) -> tuple[list[int], float]:
    """Batch sizes (in order, summing to ``n``) and the time the window has arrived."""
    if n <= 0:
        return [], 0.0
    t = [0.0] * (n + 1)
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        best, best_j = float("inf"), 1
        for j in range(1, i + 1):
            done = max(t[j - 1], i * cost.g) + cost.a + (i - j + 1) * cost.beta
            if done < best - 1e-15:
                best, best_j = done, j
        t[i], cut[i] = best, best_j
    sizes: list[int] = []
    i = n
    while i > 0:
        sizes.append(i - cut[i] + 1)
        i = cut[i] - 1
    return sizes[::-1], t[n]


def plan_time(sizes: list[int], cost: CostModel) -> float:
    """When the last batch of this plan has arrived (the DP's objective, for any plan)."""
    done, drafted = 0.0, 0
    for b in sizes:
        drafted += b
        done = max(done, drafted * cost.g) + cost.a + b * cost.beta
    return done


@dataclass
class CostFit:
    """Online fit of the cost model: batch send times against sizes (a decayed line), and the
    mean draft time per token."""

    sends: LineFit = field(default_factory=LineFit)
    _g: float | None = None

    def add_batch(self, size: int, seconds: float) -> None:
        self.sends.add(size, seconds)

    def add_draft(self, seconds_per_token: float) -> None:
        self._g = seconds_per_token if self._g is None else 0.9 * self._g + 0.1 * seconds_per_token

    def model(self) -> CostModel | None:
        a = self.sends.predict(0)
        if a is None or self._g is None:
            return None
        return CostModel(a=a, beta=self.sends.slope(), g=self._g)


@dataclass
class UploadPlanner:
    """The current plan for windows of ``window`` tokens; redone when the fitted model moves by
    more than ``replan_change``."""

    window: int
    replan_change: float = 0.2
    fit: CostFit = field(default_factory=CostFit)
    planned_for: CostModel | None = None
    sizes: list[int] = field(default_factory=list)
    replans: int = 0

    def plan(self) -> list[int]:
        model = self.fit.model()
        if model is None:
            return [self.window]  # nothing measured yet: one batch, as stop-and-wait sends it
        if self.planned_for is None or model.moved_from(self.planned_for, self.replan_change) \
                or sum(self.sizes) != self.window:
            self.sizes, _ = plan_batches(self.window, model)
            self.planned_for = model
            self.replans += 1
        return self.sizes

    def boundaries(self) -> frozenset[int]:
        """Where a batch ends before the window's last token: the held uploads' cut points."""
        cuts, total = [], 0
        for size in self.plan()[:-1]:
            total += size
            cuts.append(total)
        return frozenset(cuts)
