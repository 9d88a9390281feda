from __future__ import annotations

import pytest

from clients.bench.bounds import (
    cloud_tokens_per_s,
    expected_tokens_per_round,
    per_token_alpha,
    pipelined_tokens_per_s,
    stop_and_wait_tokens_per_s,
)


def test_expected_tokens_per_round() -> None:
    assert expected_tokens_per_round(0.0, 4) == 1.0
    assert expected_tokens_per_round(1.0, 4) == 5.0
    assert expected_tokens_per_round(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)
    assert expected_tokens_per_round(0.5, 4) == pytest.approx((1 - 0.5**5) / 0.5)


def test_stop_and_wait_by_hand() -> None:
    # alpha 0.5, gamma 2: E = 1.75 tokens per round of 2*10 + 50 + 30 = 100 ms
    assert stop_and_wait_tokens_per_s(0.5, 2, 0.010, 0.050, 0.030) == pytest.approx(17.5)


def test_pipelining_never_slower_and_equal_when_always_rejected() -> None:
    args = (0.7, 4, 0.01, 0.05, 0.03)
    assert pipelined_tokens_per_s(*args) > stop_and_wait_tokens_per_s(*args)
    assert pipelined_tokens_per_s(0.0, 4, 0.01, 0.05, 0.03) == pytest.approx(
        stop_and_wait_tokens_per_s(0.0, 4, 0.01, 0.05, 0.03))


def test_cloud_bound() -> None:
    assert cloud_tokens_per_s(100, 0.04, 0.05) == pytest.approx(100 / 4.05)


def test_per_token_alpha_counts_only_tested_tokens() -> None:
    # rounds of 4: [acc, acc, REJ, untested], [acc x4]: 6 accepted, 1 rejection
    assert per_token_alpha(6, 1) == pytest.approx(6 / 7)
    assert per_token_alpha(0, 0) == 0.0
    assert per_token_alpha(0, 5) == 0.0
