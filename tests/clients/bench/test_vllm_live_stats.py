"""The statistics of ``clients.bench.vllm_live``'s sampled run (pure numpy/scipy, no engine)."""

from __future__ import annotations

import numpy as np

from clients.bench.vllm_live import chi_square, shift_power, shifted_law

PROBS = np.array([0.5, 0.3, 0.15, 0.05 - 1e-9, 1e-9])  # the last token is expected < 5 times


def test_counts_that_follow_the_law_pass_and_none_is_lost_when_the_rest_is_folded() -> None:
    draws = 10_000
    counts = {t: round(p * draws) for t, p in enumerate(PROBS) if round(p * draws)}
    p_value, bins = chi_square(counts, PROBS, draws)
    assert bins == 4 and p_value > 0.99  # 4 tokens with a bin each, the fifth folded into the last
    assert chi_square({0: 4_000, 1: 3_500, 2: 2_000, 3: 500}, PROBS, draws)[0] < 1e-6


def test_the_power_against_a_shift_grows_with_the_draws_and_a_shifted_sample_fails() -> None:
    assert shift_power(PROBS, 500, 4, 0.02, 1e-3) < shift_power(PROBS, 20_000, 4, 0.02, 1e-3)
    assert shift_power(PROBS, 20_000, 4, 0.02, 1e-3) > 0.95
    shifted = shifted_law(PROBS, 0.02)
    assert shifted[0] == PROBS[0] - 0.02 and shifted[1] == PROBS[1] + 0.02
    drawn = np.random.default_rng(0).multinomial(20_000, shifted)
    assert chi_square({t: int(c) for t, c in enumerate(drawn) if c}, PROBS, 20_000)[0] < 1e-3
