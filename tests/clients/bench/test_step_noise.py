"""``python -m clients.bench.step_noise`` without servers: its table and its argument checks."""

from __future__ import annotations

import pytest

from clients.bench.step_noise import Sample, parse, summary


def test_summary_gives_each_modes_spread_and_the_cloud_requests_slowest_over_fastest() -> None:
    samples = [Sample(0, "cloud", 200, 100.0, 66.0, "cloud"), Sample(0, "auto", 200, 110.0, 70.0, "cloud"),
               Sample(1, "auto", 200, 90.0, 88.0, "pipelined>cloud"), Sample(1, "cloud", 200, 120.0, 88.0, "cloud"),
               Sample(2, "cloud", 200, 95.0, 70.0, "cloud")]
    text = summary(samples, ["cloud", "auto"])
    assert "| cloud | 3 | 100.0 [95.0-120.0] | 70.0 [66.0-88.0] | cloud |" in text
    assert "| auto | 2 | 100.0 [90.0-110.0] | 79.0 [70.0-88.0] | cloud, pipelined>cloud |" in text
    assert "88 / 66" not in text and "1.33x" in text  # over the cloud-streamed requests of every mode: 88 / 66


def test_a_request_too_short_to_have_steps_is_refused() -> None:
    assert parse(["--tokens", "200"]).requests == 6
    with pytest.raises(SystemExit):
        parse(["--tokens", "21"])
    with pytest.raises(SystemExit):
        parse(["--requests", "0"])
