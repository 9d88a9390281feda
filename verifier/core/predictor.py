"""The speculation controller's rejection predictor (WISP): stop drafting just before a likely
rejection. Pure numpy.

Features of a draft token, from the draft model's logits at its position (temperature 1):
*confidence* (top-1 probability), *entropy* (nats) and *margin* (top-1 minus top-2
probability). A logistic model turns them into the probability that the target accepts the
token; the edge ends a round before a token whose predicted acceptance is below a bound. It is
fitted from logged rounds: in a round, draft tokens before the first rejection were accepted,
the first rejected one was rejected, and the tokens after it were never tested (left out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from verifier.core.sampling import softmax

FEATURES = ("confidence", "entropy", "margin")
FloatArray = npt.NDArray[np.float64]


def draft_features(logits: npt.ArrayLike) -> tuple[float, float, float]:
    """(confidence, entropy, margin) of the draft's distribution at one position."""
    p = softmax(logits, dtype=np.float32)
    top2 = np.partition(p, -2)[-2:] if p.size > 1 else np.array([0.0, float(p[0])])
    nonzero = p[p > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    return float(top2[1]), entropy, float(top2[1] - top2[0])


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    return out


@dataclass(frozen=True)
class AcceptancePredictor:
    """P(accept) = sigmoid(bias + weights . features)."""

    weights: tuple[float, float, float]
    bias: float

    def p_accept(self, features: Sequence[float]) -> float:
        return float(_sigmoid(np.asarray(self.bias + np.dot(self.weights, features), dtype=np.float64)))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"features": FEATURES, "weights": list(self.weights), "bias": self.bias}))

    @classmethod
    def load(cls, path: Path) -> AcceptancePredictor:
        obj = json.loads(path.read_text())
        if tuple(obj.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: a predictor over {obj.get('features')}, expected {FEATURES}")
        w = obj["weights"]
        return cls((float(w[0]), float(w[1]), float(w[2])), float(obj["bias"]))


def labelled_tokens(rounds: Sequence[tuple[Sequence[Sequence[float]], int]]) -> tuple[FloatArray, FloatArray]:
    """Training rows from logged rounds of (features per draft token, accepted count): tokens
    before the first rejection are accepted (1), the first rejected one 0, later ones untested."""
    x: list[Sequence[float]] = []
    y: list[float] = []
    for features, accepted in rounds:
        for i, f in enumerate(features):
            if i > accepted:
                break
            x.append(f)
            y.append(1.0 if i < accepted else 0.0)
    return np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURES)), np.asarray(y, dtype=np.float64)


def fit_predictor(x: FloatArray, y: FloatArray, l2: float = 1e-3, iterations: int = 50) -> AcceptancePredictor:
    """Logistic regression by Newton's method (IRLS), with a small L2 penalty on the weights."""
    if x.shape[0] == 0:
        raise ValueError("no labelled draft tokens to fit on")
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = l2 * np.eye(design.shape[1])
    penalty[0, 0] = 0.0  # the bias is not penalised
    for _ in range(iterations):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - y) + penalty @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(design.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return AcceptancePredictor((float(beta[1]), float(beta[2]), float(beta[3])), float(beta[0]))


def read_rounds(path: Path) -> list[tuple[list[list[float]], int]]:
    """A round log (the edge's ``--round-log``): per line ``{"features": [[c, e, m], ...],
    "accepted": n}``, as (features per draft token, accepted)."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            obj = json.loads(line)
            out.append(([[float(v) for v in f] for f in obj["features"]], int(obj["accepted"])))
    return out


def log_loss(model: AcceptancePredictor, x: FloatArray, y: FloatArray) -> float:
    """Mean negative log-likelihood of the labels under the model."""
    p = np.clip(np.array([model.p_accept(row) for row in x]), 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
