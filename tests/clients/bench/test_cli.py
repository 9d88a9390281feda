"""tandem-bench --quick on the LAN scenario: real verifier, relay and edge processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clients.bench.measure import MODES, ModeSummary
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "clients.bench.cli", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert report["lossless_ok"] and report["mismatches"] == []
    lan = report["scenarios"]["lan"]["modes"]
    assert set(lan) == {"cloud", "edge", "vanilla", "tandem"}
    fields = set(ModeSummary.__dataclass_fields__)
    for summary in lan.values():
        assert fields <= set(summary)
        assert summary["tokens"] > 0 and summary["tokens_per_s"] > 0 and summary["bound_tokens_per_s"] > 0
    # every lossless mode produced the cloud-only text, prompt by prompt
    reqs = report["requests"]
    for pid in {r["prompt_id"] for r in reqs}:
        texts = {r["text"] for r in reqs if r["prompt_id"] == pid and MODES[r["mode"]].lossless}
        assert len(texts) == 1
    assert lan["vanilla"]["acceptance_rate"] > 0 and lan["vanilla"]["bytes_up_per_token"] > 0
    for name in ("results.md", "tokens_per_s.png", "latency_cdf.png"):
        assert (out / name).stat().st_size > 0


def test_each_mode_follows_different_modes_across_prompts() -> None:
    from clients.bench.measure import MODES
    from clients.bench.spread import balanced

    modes = [MODES[m] for m in ("cloud", "vllm-serve", "tandem", "tandem-alt")]
    orders = [balanced(modes, i) for i in range(8)]
    assert all(sorted(m.name for m in o) == sorted(m.name for m in modes) for o in orders)
    predecessors = {m.name: {o[o.index(m) - 1].name for o in orders if o.index(m) > 0} for m in modes}
    assert all(len(p) >= 2 for p in predecessors.values()), predecessors
    assert {o[0].name for o in orders} == {m.name for m in modes}  # each mode goes first on some prompt
