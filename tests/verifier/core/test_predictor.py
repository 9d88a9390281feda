"""The rejection predictor, with numbers: features by hand, labels from rounds, a fit that
recovers a known model, calibration, and the file round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from verifier.core.predictor import AcceptancePredictor, draft_features, fit_predictor, labelled_tokens


def test_features_by_hand() -> None:
    conf, entropy, margin = draft_features(np.log(np.array([0.5, 0.3, 0.2])))
    assert conf == pytest.approx(0.5) and margin == pytest.approx(0.2)
    assert entropy == pytest.approx(-(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)), rel=1e-5)
    assert draft_features(np.zeros(4)) == pytest.approx((0.25, math.log(4), 0.0), rel=1e-5)


def test_labels_stop_at_the_first_rejection() -> None:
    f = [[0.9, 0.1, 0.8], [0.8, 0.2, 0.6], [0.3, 1.0, 0.1], [0.7, 0.4, 0.5]]
    x, y = labelled_tokens([(f, 2), (f[:2], 2), (f[:1], 0)])
    # round 1: two accepted, the third rejected, the fourth untested; round 2: both accepted;
    # round 3: the only token rejected
    assert y.tolist() == [1, 1, 0, 1, 1, 0] and x.shape == (6, 3)


def test_the_fit_recovers_a_known_model_and_is_calibrated() -> None:
    rng = np.random.default_rng(0)
    truth = AcceptancePredictor((6.0, -1.0, 2.0), -2.5)
    conf = rng.uniform(0.05, 1.0, 20000)
    x = np.stack([conf, rng.uniform(0, 4, conf.size), conf * rng.uniform(0, 1, conf.size)], axis=1)
    p = np.array([truth.p_accept(row) for row in x])
    y = (rng.random(conf.size) < p).astype(float)
    fitted = fit_predictor(x, y, l2=0.0)
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=0.35)
    assert fitted.bias == pytest.approx(truth.bias, abs=0.35)
    # calibrated: in each band of predicted probability, the observed acceptance matches
    predicted = np.array([fitted.p_accept(row) for row in x])
    for lo in (0.1, 0.3, 0.5, 0.7):
        band = (predicted >= lo) & (predicted < lo + 0.2)
        assert abs(y[band].mean() - predicted[band].mean()) < 0.03


def test_a_predictor_round_trips_through_its_file(tmp_path: Path) -> None:
    model = AcceptancePredictor((1.5, -0.25, 3.0), -0.75)
    model.save(tmp_path / "c.json")
    assert AcceptancePredictor.load(tmp_path / "c.json") == model
    (tmp_path / "bad.json").write_text('{"features": ["x"], "weights": [1], "bias": 0}')
    with pytest.raises(ValueError):
        AcceptancePredictor.load(tmp_path / "bad.json")


def test_no_data_is_refused() -> None:
    with pytest.raises(ValueError):
        fit_predictor(np.zeros((0, 3)), np.zeros(0))
