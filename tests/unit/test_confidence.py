"""The draft confidence that cuts a round short: the top-1 probability at temperature 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxy.draft.base import confidence
from proxy.openai_schema import TandemOptions


def test_confidence_is_the_top_probability() -> None:
    assert confidence(np.zeros(2)) == pytest.approx(0.5)
    assert confidence(np.array([math.log(3.0), 0.0])) == pytest.approx(0.75)
    assert confidence(np.zeros(49152)) == pytest.approx(1 / 49152)


def test_confidence_is_stable_for_huge_logits() -> None:
    assert confidence(np.array([1e4, 0.0, -1e4], dtype=np.float32)) == pytest.approx(1.0)
    assert confidence(np.array([1e4, 1e4], dtype=np.float32)) == pytest.approx(0.5)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_threshold_outside_0_1_is_refused(value: float) -> None:
    with pytest.raises(ValueError):
        TandemOptions(confidence_threshold=value)
