"""`clients.bench.draft_speed`'s table: ratios taken run by run, then median [min-max]."""

from __future__ import annotations

from pathlib import Path

from clients.bench.draft_speed import table


def test_the_speed_ratio_is_taken_run_by_run() -> None:
    models = {"target": Path("t.gguf"), "draft": Path("d.gguf")}
    runs = [{"run": 0, "model": "target", "ms_per_token": 6.0}, {"run": 0, "model": "draft", "ms_per_token": 2.0},
            {"run": 1, "model": "draft", "ms_per_token": 3.0}, {"run": 1, "model": "target", "ms_per_token": 12.0},
            {"run": 2, "model": "target", "ms_per_token": 7.0}, {"run": 2, "model": "draft", "ms_per_token": 1.75}]
    lines = table(models, runs, {"draft": 0.4791})
    assert lines[2] == "| target | 7.000 [6.000-12.000] | 1 | - |"
    # per run 3.0, 4.0, 4.0: the median of the ratios, not the ratio of the medians (7 / 2 = 3.5)
    assert lines[3] == "| draft | 2.000 [1.750-3.000] | 4.00 [3.00-4.00] | 0.479 |"
