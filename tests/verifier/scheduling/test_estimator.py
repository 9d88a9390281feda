"""The verification-time estimator, with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from verifier.scheduling.estimator import BatchShape, VerifyTimeEstimator, fit_nonnegative


def test_features_by_hand() -> None:
    shape = BatchShape.of([(5, 100), (1, 20)])
    # attended pairs: 5 * 105 + 1 * 21 = 546
    assert shape.features().tolist() == [1.0, 2.0, 6.0, 0.546, 0.0]
    # rows in requests of their own (vLLM's whole rows) count apart
    assert BatchShape.of([(5, 100, 5), (1, 20)]).features().tolist() == [1.0, 2.0, 6.0, 0.546, 5.0]


def test_it_learns_a_linear_cost_exactly() -> None:
    truth = np.array([0.030, 0.002, 0.004, 0.01, 0.02])
    est = VerifyTimeEstimator(prior=(0.1, 0.0, 0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = BatchShape.of([(int(rng.integers(1, 9)), int(rng.integers(0, 900)), int(rng.integers(0, 2)) * 3)
                               for _ in range(rng.integers(1, 9))])
        est.observe(shape, float(shape.features() @ truth))
    np.testing.assert_allclose(est.coef, truth, rtol=1e-6, atol=1e-9)
    probe = BatchShape.of([(4, 300, 5), (2, 50)])
    assert est.predict(probe) == pytest.approx(float(probe.features() @ truth))
    # early predictions came from the prior, later ones are exact: the median error falls to ~0
    err = est.median_relative_error()
    assert err is not None and err < 1e-3


def test_noise_keeps_the_median_error_small_and_coefficients_non_negative() -> None:
    truth = np.array([0.05, 0.0, 0.006, 0.0, 0.0])
    est = VerifyTimeEstimator()
    rng = np.random.default_rng(1)
    for _ in range(200):
        shape = BatchShape.of([(int(rng.integers(1, 6)), int(rng.integers(0, 500))) for _ in range(rng.integers(1, 6))])
        est.observe(shape, float(shape.features() @ truth) * float(rng.normal(1.0, 0.05)))
    assert (est.coef >= 0).all()
    err = est.median_relative_error()
    assert err is not None and err < 0.1


def test_a_feature_the_window_never_saw_keeps_its_prior() -> None:
    """Batches without separate rows tell nothing of their cost: the prior answers for them
    until such batches are seen, then the fit does."""
    prior = (0.06, 0.005, 0.006, 0.05, 0.03)
    truth = np.array([0.02, 0.001, 0.003, 0.01, 0.05])
    est = VerifyTimeEstimator(prior=prior)
    rng = np.random.default_rng(2)

    def batch(separate: bool) -> BatchShape:
        return BatchShape.of([(int(rng.integers(1, 6)), int(rng.integers(0, 400)), int(separate) * 4)
                              for _ in range(rng.integers(1, 5))])

    for _ in range(30):
        shape = batch(False)
        est.observe(shape, float(shape.features() @ truth))
    assert est.coef[4] == pytest.approx(0.03) and est.coef[:4] == pytest.approx(truth[:4])
    for _ in range(30):
        shape = batch(bool(rng.integers(0, 2)))
        est.observe(shape, float(shape.features() @ truth))
    assert est.coef == pytest.approx(truth)


def test_fit_nonnegative_drops_negative_coefficients() -> None:
    x = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    y = np.array([3.0, 2.0, 1.0])  # slope -1: clipped to a constant fit
    coef = fit_nonnegative(x, y)
    assert coef[1] == 0.0 and coef[0] == pytest.approx(2.0)


def test_an_empty_batch_costs_nothing_and_no_error_before_data() -> None:
    est = VerifyTimeEstimator()
    assert est.predict(BatchShape.of([])) == 0.0 and est.median_relative_error() is None


def test_calibration_shapes_vary_every_feature_within_the_limits() -> None:
    from verifier.scheduling.estimator import BatchShape, calibration_shapes

    shapes = calibration_shapes(12, max_context=512, max_batch_tokens=256)
    assert len(shapes) == 12
    assert len({items for items, _, _ in shapes}) >= 3 and len({new for _, _, new in shapes}) >= 3
    assert all(context + new < 512 and items * new <= 256 for items, context, new in shapes)
    x = np.stack([BatchShape.of([(new, context)] * items).features() for items, context, new in shapes])
    assert np.linalg.matrix_rank(x[:, :4]) == 4  # every coefficient but separate rows' (greedy rounds have none)
    tight = calibration_shapes(8, max_context=64, max_batch_tokens=8)
    assert all(context + new < 64 and items * new <= 8 and items >= 1 for items, context, new in tight)
