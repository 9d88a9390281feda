"""Acceptance estimators and throughput bounds, by hand."""

from __future__ import annotations

import pytest

from verifier.core.bounds import (
    cloud_tokens_per_s,
    expected_tokens_per_round,
    greedy_matches,
    mean_accepted_length,
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


def test_greedy_matches() -> None:
    assert greedy_matches([1, 2, 3], [1, 5, 3]) == [True, False, True]
    with pytest.raises(ValueError):
        greedy_matches([1], [1, 2])


def test_mean_accepted_length_by_hand() -> None:
    # rounds: [T,T,F] -> 2 accepted, skip the correction; [T,T,T,T] -> 4 (gamma cap), bonus; [T] -> 1 at the end
    matches = [True, True, False, True, True, True, True, True, True]
    assert mean_accepted_length(matches, 4) == pytest.approx((2 + 4 + 1) / 3)


def test_mean_accepted_length_extremes() -> None:
    assert mean_accepted_length([False] * 6, 4) == 0.0
    assert mean_accepted_length([True] * 10, 4) == pytest.approx(4 * 2 / 2)  # rounds cover 5 positions each
    assert mean_accepted_length([], 4) == 0.0


def test_rounds_in_flight_overlap_the_round_trip() -> None:
    # alpha 1, gamma 4, Td 40 ms, RTT 200 ms, Tv 60 ms: one round out waits 260 ms a round (PicoSpec),
    # three rounds out share it (260 / 3 = 86.7 ms), and nothing beats drafting (40 ms) or the verifier
    e = 5.0
    assert pipelined_tokens_per_s(1.0, 4, 0.010, 0.200, 0.060) == pytest.approx(e / 0.260)
    assert pipelined_tokens_per_s(1.0, 4, 0.010, 0.200, 0.060, inflight=3) == pytest.approx(e / (0.260 / 3))
    assert pipelined_tokens_per_s(1.0, 4, 0.010, 0.200, 0.060, inflight=16) == pytest.approx(e / 0.060)
    assert pipelined_tokens_per_s(1.0, 4, 0.010, 0.200, 0.020, inflight=16) == pytest.approx(e / 0.040)
    # with rejections every round pays the whole trip again: more rounds out help less
    one, three = (pipelined_tokens_per_s(0.6, 4, 0.010, 0.200, 0.060, k) for k in (1, 3))
    assert one < three < pipelined_tokens_per_s(1.0, 4, 0.010, 0.200, 0.060, 3)
