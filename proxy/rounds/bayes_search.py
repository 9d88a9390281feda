"""The Bayesian search behind the dual threshold's tuner (``proxy.rounds.tuning``): a Gaussian process
over the measured time per output token and the expected improvement, with botorch. The edge's
only module that imports torch (botorch needs it): installed by the `tune` extra, imported
only when a search runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (per_token R2, cumulative R1)

#: the square both thresholds are searched in. A decision, not a measurement: every segment the
#: search spends on an extreme pair is served slower, and a round cut wherever a draft token's
#: confidence is under 0.6 (or the round's product under 0.6) is a round of a token or two for
#: most drafts, so the box stops there
BOUNDS: tuple[Point, Point] = ((0.0, 0.0), (0.6, 0.6))
#: made-up observations for the warm-up search
_WARM_UP: tuple[tuple[Point, float], ...] = (((0.3, 0.0), 0.05), ((0.5, 0.0), 0.06), ((0.1, 0.0), 0.07),
                                             ((0.3, 0.3), 0.08))


@dataclass
class BayesianSearch:
    """A GP surrogate (botorch ``SingleTaskGP``, outputs standardised, noise inferred) of the
    negated time per token over ``BOUNDS``, and the candidate maximising the log expected
    improvement over the best observed value. A call fits a GP and optimises over restarts, far
    longer than a draft step, so the tuner runs it in a worker thread."""

    seed: int = 0
    restarts: int = 4
    raw_samples: int = 64
    calls: int = 0

    def prepare(self) -> None:
        """Import torch and botorch and run one search on made-up observations (seconds, once per
        process): the first search started mid-traffic would otherwise hold the interpreter while
        it imports and warms them up."""
        self.next_point(_WARM_UP)

    def next_point(self, observations: Sequence[tuple[Point, float]]) -> Point:
        import torch
        from botorch.acquisition import LogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        self.calls += 1
        torch.set_num_threads(1)  # a small fit: more threads would only take cores from the draft model
        x = torch.tensor([p for p, _ in observations], dtype=torch.double)
        y = torch.tensor([[-v] for _, v in observations], dtype=torch.double)
        bounds = torch.tensor(BOUNDS, dtype=torch.double)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + self.calls)
            gp = SingleTaskGP(x, y, input_transform=Normalize(d=2, bounds=bounds), outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            acquisition = LogExpectedImprovement(gp, best_f=y.max())
            candidate, _ = optimize_acqf(acquisition, bounds=bounds, q=1, num_restarts=self.restarts,
                                         raw_samples=self.raw_samples)
        r2, r1 = candidate[0].tolist()
        return round(r2, 3), round(r1, 3)
