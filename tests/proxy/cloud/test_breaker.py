"""The circuit breaker and the reconnect backoff, by hand with a fake clock."""

from __future__ import annotations

import pytest

from proxy.cloud.breaker import CircuitBreaker, backoff_s


def test_the_breaker_opens_after_failures_in_a_row_and_closes_on_a_successful_trial() -> None:
    b = CircuitBreaker(threshold=3, cooldown_s=10.0)
    b.failed(0.0)
    b.failed(1.0)
    assert b.state(1.0) == "closed" and b.allows(1.0)
    b.succeeded()  # a success in between: the count starts over
    b.failed(2.0)
    b.failed(3.0)
    assert b.allows(3.0)
    b.failed(4.0)
    assert b.state(4.0) == "open" and not b.allows(13.9)
    assert b.state(14.0) == "half_open"
    assert b.allows(14.0)  # one trial
    assert not b.allows(14.5)  # and only one while it runs
    b.succeeded()
    assert b.state(14.6) == "closed" and b.allows(14.6) and b.failures == 0


def test_a_failed_trial_opens_the_breaker_again_and_a_lost_trial_frees_its_slot() -> None:
    b = CircuitBreaker(threshold=1, cooldown_s=5.0)
    b.failed(0.0)
    assert not b.allows(4.0) and b.allows(5.0)
    b.failed(5.5)  # the trial failed: another full cooldown
    assert b.state(10.0) == "open" and b.state(10.5) == "half_open"
    assert b.allows(10.5)
    assert not b.allows(15.0)  # the trial never reported back ...
    assert b.allows(15.5)  # ... after a cooldown another request may try


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(a) for a in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0])
    assert backoff_s(10_000) == 2.0
