"""Per-mode summaries: which analytic bound a mode is held to."""

from __future__ import annotations

import pytest

from clients.bench.measure import MODES, RequestResult, summarise
from verifier.core import bounds


def result(mode: str, stats: dict[str, float], tokens: int = 40, total_s: float = 2.0) -> RequestResult:
    return RequestResult(scenario="s", mode=mode, prompt_id=0, category="c", text="x" * tokens,
                         completion_tokens=tokens, ttft_s=0.2, total_s=total_s,
                         delta_times_s=[0.2 + i * 0.045 for i in range(tokens)], stats=stats, bytes_up=100,
                         bytes_down=300, edge_cpu_s=0.1)


def test_a_speculative_mode_is_held_to_the_pipelined_bound() -> None:
    stats = {"rounds": 10, "drafted": 40, "accepted": 30, "rejections": 8, "draft_ms": 400.0,
             "verify_compute_ms": 600.0}
    s = summarise([result("tandem-pipelined", stats)], MODES["tandem-pipelined"], rtt_s=0.05)
    alpha = bounds.per_token_alpha(30, 8)
    expected = bounds.pipelined_tokens_per_s(alpha, 4.0, 0.01, 0.05, 0.06, 3)
    assert s.bound_tokens_per_s == pytest.approx(expected, abs=0.01)
    assert s.measured_over_bound == pytest.approx(20 / expected, abs=0.001)
    assert s.rows_per_token == pytest.approx(50 / 40)  # 40 drafted rows and one per round, for 40 tokens


def test_mode_auto_that_streamed_from_the_cloud_is_held_to_the_clouds_bound() -> None:
    stats = {"rounds": 40, "drafted": 0, "accepted": 0, "rejections": 0, "draft_ms": 0.0,
             "verify_compute_ms": 2000.0}
    s = summarise([result("tandem", stats)], MODES["tandem"], rtt_s=0.05)
    assert s.bound_tokens_per_s == pytest.approx(bounds.cloud_tokens_per_s(40, 0.05, 0.05), abs=0.01)


def test_mode_auto_is_held_to_the_faster_paths_bound() -> None:
    # mostly streamed from the cloud, a little speculation while it measured: never held below the cloud's bound
    stats = {"rounds": 38, "drafted": 4, "accepted": 1, "rejections": 1, "draft_ms": 40.0,
             "verify_compute_ms": 1900.0}
    s = summarise([result("tandem", stats)], MODES["tandem"], rtt_s=0.05)
    cloud = bounds.cloud_tokens_per_s(40, 0.05, 0.05)
    speculative = bounds.pipelined_tokens_per_s(bounds.per_token_alpha(1, 1), 4 / 38, 0.01, 0.05, 0.05, 3)
    assert s.bound_tokens_per_s == pytest.approx(max(cloud, speculative), abs=0.01)
    assert s.bound_tokens_per_s >= cloud - 0.01
    # a good draft: speculation's bound is the higher, and auto is held to it
    stats = {"rounds": 10, "drafted": 40, "accepted": 38, "rejections": 2, "draft_ms": 100.0,
             "verify_compute_ms": 500.0}
    s = summarise([result("tandem", stats)], MODES["tandem"], rtt_s=0.05)
    speculative = bounds.pipelined_tokens_per_s(bounds.per_token_alpha(38, 2), 4.0, 0.0025, 0.05, 0.05, 3)
    assert speculative > bounds.cloud_tokens_per_s(40, 0.05, 0.05)
    assert s.bound_tokens_per_s == pytest.approx(speculative, abs=0.01)


def test_a_speculating_mode_that_drafted_nothing_is_held_to_the_clouds_bound() -> None:
    stats = {"rounds": 40, "drafted": 0, "accepted": 0, "rejections": 0, "draft_ms": 0.0,
             "verify_compute_ms": 2000.0}
    s = summarise([result("tandem-pipelined", stats)], MODES["tandem-pipelined"], rtt_s=0.05)
    assert s.bound_tokens_per_s == pytest.approx(bounds.cloud_tokens_per_s(40, 0.05, 0.05), abs=0.01)
