"""The edge's rate estimates and path choice, by hand (pure)."""

from __future__ import annotations

import pytest

from proxy.rounds.rates import Ewma, LineFit, LinkEstimates, choose, request_alpha
from verifier.core import bounds


def test_ewma_and_the_pass_time_line() -> None:
    e = Ewma(weight=0.5)
    e.add(4.0)
    e.add(8.0)
    assert e.value == 6.0
    fit = LineFit()
    assert fit.predict(3) is None
    fit.add(5, 0.080)
    assert fit.predict(1) == pytest.approx(0.080)  # one size seen: no slope to extrapolate by
    for rows, seconds in [(1, 0.050), (3, 0.060), (5, 0.070), (2, 0.055)]:
        fit.add(rows, seconds)
    assert 0.040 < (fit.predict(1) or 0) < 0.060 and (fit.predict(5) or 0) > (fit.predict(1) or 0)
    never_negative = LineFit()
    for rows, seconds in [(1, 0.05), (9, 0.01)]:
        never_negative.add(rows, seconds)
    assert never_negative.predict(1) == pytest.approx(0.03, rel=0.05)  # a falling line is clamped flat


def test_rates_follow_the_bounds_with_what_was_measured() -> None:
    est = LinkEstimates()
    assert est.rates(4, 50) is None
    for accepted in (4, 4, 2, 4):  # 14 accepted, 1 rejection: alpha 14/15
        est.observe_round(drafted=4, accepted=accepted, trip_s=0.160, verifier_s=0.060)
        est.observe_draft(0.010)
    rates = est.rates(4, 50)
    assert rates is not None
    alpha = 14 / 15
    assert est.alpha == pytest.approx(alpha, rel=0.02)  # decayed counts
    assert rates["stop_and_wait"] == pytest.approx(bounds.stop_and_wait_tokens_per_s(est.alpha, 4, 0.010, 0.100,
                                                                                      0.060))
    steady = bounds.pipelined_tokens_per_s(est.alpha, 4, 0.010, 0.100, 0.060)
    # not yet streaming: the first round's trip (0.2 s) beyond the pipeline's steady period per round
    first_beyond_s = 0.200 - bounds.expected_tokens_per_round(est.alpha, 4) / steady
    assert rates["pipelined"] == pytest.approx(bounds.started_tokens_per_s(50, steady, first_beyond_s))
    assert est.rates(4, 50, started="pipelined")["pipelined"] == pytest.approx(steady)  # type: ignore[index]
    assert rates["cloud"] == pytest.approx(bounds.cloud_tokens_per_s(50, 0.060, 0.100))  # a 1-row pass, no slope
    est.observe_cloud_step(0.030)
    assert est.rates(4, 50)["cloud"] == pytest.approx(bounds.cloud_tokens_per_s(50, 0.030, 0.100))  # type: ignore[index]


def test_a_path_already_streaming_pays_no_start_so_a_turn_late_in_a_request_does_not_pay() -> None:
    """A phone on a mobile network (100 ms of trip, 12 ms a draft, 62 ms a cloud step, a 70 ms
    pass, acceptance 0.75) streaming from the cloud: with 400 tokens to go, speculation wins by
    more than the margin; with 11 to go it does not, once the running stream is not charged the
    trip it paid at its start (charged, it would have looked 13% slower and the request turned)."""
    est = LinkEstimates()
    for accepted in (4, 4, 4, 0):
        est.observe_round(drafted=4, accepted=accepted, trip_s=0.170, verifier_s=0.070)
    est.observe_draft(0.012)
    est.observe_cloud_step(0.062)
    long, late = est.rates(4, 400, 3, alpha=0.75, started="cloud"), est.rates(4, 11, 3, alpha=0.75, started="cloud")
    assert long is not None and late is not None
    assert late["cloud"] == pytest.approx(1 / 0.062) == long["cloud"]  # streaming already: no trip to pay
    assert choose(long, "cloud") == "pipelined" and choose(late, "cloud") == "cloud"
    charged = est.rates(4, 11, 3, alpha=0.75)  # a request that streams nothing yet: the cloud pays its trip
    assert charged is not None and charged["cloud"] == pytest.approx(11 / (0.100 + 11 * 0.062))
    assert choose(charged, "cloud") == "pipelined"
    steady = est.rates(4, 11, 3, alpha=0.75, started="pipelined")
    assert steady is not None and steady["pipelined"] > late["pipelined"]  # the first round's wait is paid once


def test_choose_keeps_the_current_path_unless_another_wins_by_the_margin() -> None:
    rates = {"pipelined": 20.0, "stop_and_wait": 15.0, "cloud": 21.0}
    assert choose(rates, None) == "cloud"  # type: ignore[arg-type]
    assert choose(rates, "pipelined") == "pipelined"  # type: ignore[arg-type]  # 5% better is not enough
    assert choose({**rates, "cloud": 23.0}, "pipelined") == "cloud"  # type: ignore[arg-type]


def test_the_explorer_speculates_every_nth_request_sent_to_the_cloud() -> None:
    from proxy.rounds.rates import Explorer

    explorer = Explorer(every=3, rounds=6)
    picks = [explorer.explore(to_cloud) for to_cloud in [True, True, True, True, False, True, True, True]]
    # the 3rd in a row explores and restarts the count; a request sent to speculation resets it
    assert picks == [False, False, True, False, False, False, False, True]


def test_the_cloud_step_is_never_below_a_rows_share_of_a_round() -> None:
    est = LinkEstimates()
    for rows, seconds in [(5, 0.080), (3, 0.050), (5, 0.081), (2, 0.020)]:  # a steep line: 0 s at one row
        est.observe_round(drafted=rows - 1, accepted=rows - 1, trip_s=0.1 + seconds, verifier_s=seconds)
        est.observe_draft(0.010)
    assert est.passes.predict(1) is not None and est.passes.predict(1) < 0.005  # type: ignore[operator]
    step = est.cloud_step(4)
    assert step is not None and step == pytest.approx((est.passes.predict(5) or 0) / 5)
    rates = est.rates(4, 50)
    assert rates is not None and rates["cloud"] < 1000  # not infinitely fast


def test_more_rounds_in_flight_raise_the_pipelined_rate_over_a_long_trip() -> None:
    est = LinkEstimates()
    for _ in range(4):
        est.observe_round(drafted=4, accepted=4, trip_s=0.260, verifier_s=0.060)
        est.observe_draft(0.010)
    one, three = est.rates(4, 50, 1), est.rates(4, 50, 3)
    assert one is not None and three is not None and three["pipelined"] > 2 * one["pipelined"]
    assert three["stop_and_wait"] == one["stop_and_wait"]


def test_a_requests_acceptance_is_its_own_counts_with_the_edges_estimate_as_a_prior() -> None:
    assert request_alpha(0.5, 0, 0) == 0.5  # nothing seen: the edge's estimate
    assert request_alpha(0.5, 8, 0) == pytest.approx((8 + 4) / 16)  # 8 right guesses weigh as much as the prior
    assert request_alpha(0.5, 8, 0, prior_tokens=0.0) == 1.0
    assert request_alpha(0.2, 90, 10) == pytest.approx((90 + 1.6) / 108)  # many tokens: nearly the request's 0.9


def test_rates_take_a_requests_own_acceptance() -> None:
    est = LinkEstimates()
    for _ in range(3):
        est.observe_round(drafted=4, accepted=0, trip_s=0.160, verifier_s=0.060)
        est.observe_draft(0.010)
    own = est.rates(4, 50, alpha=0.9)
    assert own is not None and est.alpha == 0.0
    assert own["stop_and_wait"] == pytest.approx(bounds.stop_and_wait_tokens_per_s(0.9, 4, 0.010, 0.100, 0.060))
    assert own["cloud"] == est.rates(4, 50)["cloud"]  # type: ignore[index]


def test_shadow_guesses_teach_the_acceptance_as_accepted_and_rejected_tokens() -> None:
    est = LinkEstimates(decay=0.5)
    est.observe_agreement(agreed=6, missed=2)
    assert (est.accepted, est.rejections, est.alpha) == (6.0, 2.0, 0.75)
    est.observe_agreement(agreed=0, missed=4)  # one decay step per stretch
    assert (est.accepted, est.rejections) == (3.0, 5.0) and est.rounds == 0  # no round's timing came with them
    est.observe_agreement(agreed=90, missed=10)  # a long stretch weighs 16 tokens, its share kept
    assert (est.accepted, est.rejections) == pytest.approx((1.5 + 14.4, 2.5 + 1.6))
