"""Distributions and keyed randomness, tested with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from verifier.core.sampling import (
    SparseDist,
    Stream,
    keyed_uniform,
    sample_index,
    softmax,
    target_distribution,
    top_p_filter,
    truncate_support,
)


def test_softmax_temperature() -> None:
    p = softmax(np.array([0.0, np.log(3.0)]))
    assert np.allclose(p, [0.25, 0.75])
    p2 = softmax(np.array([0.0, np.log(3.0)]), temperature=0.5)
    assert np.allclose(p2, [0.1, 0.9])


def test_top_p_keeps_smallest_set_reaching_mass() -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert np.allclose(top_p_filter(p, 0.8), [0.625, 0.375, 0, 0])
    assert np.allclose(top_p_filter(p, 0.81), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0])
    assert np.allclose(top_p_filter(p, 0.4), [1, 0, 0, 0])
    assert np.allclose(top_p_filter(p, 1.0), p)


def test_top_p_ties_break_by_token_id() -> None:
    p = np.array([0.25, 0.25, 0.25, 0.25])
    assert np.allclose(top_p_filter(p, 0.5), [0.5, 0.5, 0, 0])


def test_truncate_support() -> None:
    q = truncate_support(np.array([0.1, 0.6, 0.0, 0.3]), 2)
    assert q.ids.tolist() == [1, 3]
    assert np.allclose(q.probs, [2 / 3, 1 / 3])
    assert truncate_support(np.array([0.0, 1.0, 0.0]), 8).ids.tolist() == [1]


def test_sparse_dist_validation() -> None:
    SparseDist(np.array([1, 2]), np.array([0.5, 0.5])).validate(4)
    for ids, probs in [([1, 1], [0.5, 0.5]), ([1, 9], [0.5, 0.5]), ([1], [0.7]), ([1, 2], [1.0, 0.0])]:
        with pytest.raises(ValueError):
            SparseDist(np.array(ids), np.array(probs)).validate(4)


def test_keyed_uniform_is_deterministic_and_stream_separated() -> None:
    a = keyed_uniform(7, 10, Stream.ACCEPT)
    assert a == keyed_uniform(7, 10, Stream.ACCEPT)
    assert a != keyed_uniform(7, 10, Stream.NEXT)
    assert a != keyed_uniform(7, 11, Stream.ACCEPT)
    assert a != keyed_uniform(8, 10, Stream.ACCEPT)


def test_sample_index_inverse_cdf() -> None:
    p = np.array([0.2, 0.0, 0.8])
    assert sample_index(p, 0.1) == 0
    assert sample_index(p, 0.2) == 2  # the edge belongs to the next non-empty bucket
    assert sample_index(p, 0.999999) == 2
    assert sample_index(np.array([0.0, 2.0, 0.0]), 0.5) == 1


def test_target_distribution_composes() -> None:
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    p = target_distribution(logits, 0.7, 0.9)
    assert np.isclose(p.sum(), 1.0) and p[0, 3] == 0.0
