"""One scenario across repeats by hand: tokens/s per repeat, ratios to the baseline per repeat,
and the per-category figures."""

from __future__ import annotations

from typing import Any

import pytest

from clients.bench.measure import MODES, RequestResult
from clients.bench.repeats import per_repeat, scenario_summary

SPEC = {"rounds": 2, "drafted": 8, "accepted": 6, "rejections": 1}  # per request of a speculating mode


def result(mode: str, prompt_id: int, category: str, repeat: int, total_s: float,
           stats: dict[str, Any] | None = None) -> RequestResult:
    return RequestResult(scenario="lan", mode=mode, prompt_id=prompt_id, category=category, text="x" * 10,
                         completion_tokens=10, ttft_s=0.1, total_s=total_s, delta_times_s=[0.1, 0.2],
                         stats=stats or {}, bytes_up=0, bytes_down=0, edge_cpu_s=0.0, repeat=repeat)


def run() -> list[RequestResult]:
    """Two prompts (math, rag), three repeats; cloud takes 1 s a request but 2 s in repeat 1 (a
    noisy neighbour); tandem takes 0.5 s on math and 1 s on rag, and accepts less on rag."""
    out = []
    for repeat in range(3):
        slow = 2.0 if repeat == 1 else 1.0
        out += [result("cloud", 0, "math", repeat, slow), result("cloud", 1, "rag", repeat, slow),
                result("tandem", 0, "math", repeat, 0.5 * slow, SPEC),
                result("tandem", 1, "rag", repeat, slow, {**SPEC, "accepted": 2, "rejections": 2})]
    return out


def test_tokens_per_s_per_repeat() -> None:
    results = run()
    assert per_repeat([r for r in results if r.mode == "cloud"], 3) == [10.0, 5.0, 10.0]
    assert per_repeat([r for r in results if r.mode == "tandem"], 3) == pytest.approx([40 / 3, 20 / 3, 40 / 3])
    assert per_repeat([], 2) == [0.0, 0.0]


def test_ratios_to_the_baseline_are_taken_per_repeat() -> None:
    summary = scenario_summary(run(), [MODES["cloud"], MODES["tandem"]], 0.001, "cloud", 3)
    tandem = summary["modes"]["tandem"]
    assert summary["baseline"] == "cloud"
    # the slow repeat slowed both modes alike: the ratio holds at 4/3 in every repeat
    assert tandem["vs_baseline"]["values"] == [1.333] * 3 and tandem["vs_baseline"]["iqr"] == 0.0
    assert tandem["tokens_per_s_spread"] == {"median": 13.33, "q1": 10.0, "q3": 13.33, "iqr": 3.33, "min": 6.67,
                                             "max": 13.33, "values": [13.33, 6.67, 13.33]}
    assert summary["modes"]["cloud"]["vs_baseline"]["values"] == [1.0] * 3
    # the per-mode figures pool every repeat: 6 requests of 2 rounds, 8 drafts each
    assert (tandem["requests"], tandem["tokens"]) == (6, 60)
    assert tandem["acceptance_rate"] == pytest.approx((3 * 6 + 3 * 2) / 48, abs=1e-4)
    assert tandem["accepted_per_round"] == 2.0 and tandem["tokens_per_round"] == 3.0
    assert tandem["alpha_per_token"] == pytest.approx(24 / (24 + 9), abs=1e-4)


def test_per_category_figures() -> None:
    categories = scenario_summary(run(), [MODES["cloud"], MODES["tandem"]], 0.001, "cloud", 3)["categories"]
    assert list(categories["tandem"]) == ["math", "rag"]
    math, rag = categories["tandem"]["math"], categories["tandem"]["rag"]
    assert (math["requests"], math["tokens"]) == (3, 30)
    assert (math["acceptance_rate"], math["accepted_per_round"], math["tokens_per_round"]) == (0.75, 3.0, 4.0)
    assert (rag["acceptance_rate"], rag["accepted_per_round"], rag["tokens_per_round"]) == (0.25, 1.0, 2.0)
    assert math["tokens_per_s_spread"]["values"] == [20.0, 10.0, 20.0] and math["vs_baseline"]["median"] == 2.0
    assert rag["vs_baseline"]["values"] == [1.0, 1.0, 1.0]
    assert categories["cloud"]["math"]["acceptance_rate"] == 0.0  # nothing drafted


def test_paths_are_counted_per_mode_and_category() -> None:
    results = run()
    results[2].stats = {**SPEC, "path": "cloud>stop_and_wait"}  # repeat 0, tandem, math
    for r in results:
        if r.mode == "tandem" and not r.stats.get("path"):
            r.stats = {**r.stats, "path": "cloud"}
    summary = scenario_summary(results, [MODES["cloud"], MODES["tandem"]], 0.001, "cloud", 3)
    assert summary["modes"]["tandem"]["paths"] == "cloud 5, cloud>stop_and_wait 1"
    assert summary["categories"]["tandem"]["math"]["paths"] == "cloud 2, cloud>stop_and_wait 1"
    assert summary["modes"]["cloud"]["paths"] == ""  # none reported
