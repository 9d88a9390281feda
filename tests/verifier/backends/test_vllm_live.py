"""The live vLLM route (a prototype, ``verifier.backends.vllm_live``) against vLLM's own greedy
decoding: real engines (in a subprocess: the bench), drafts right, wrong at a known place and
shorter than K, sessions alone and two at once, contexts across KV-block boundaries (block 32,
prompts of 30-60 tokens + 24); then sampled rounds (one draft in K = 4 slots: the unused slots
are dropped, never sent as pads) against transformers' distribution, and the same chi-square
failing on vLLM's CPU expand kernel as shipped (the planted bug)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_every_live_round_gives_the_accepted_drafts_and_vllms_own_next_token(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    done = subprocess.run([sys.executable, "-m", "clients.bench.vllm_live", "--limit", "3", "--max-tokens", "24",
                           "--sessions", "1", "2", "--seed", "3", "--sampled-draws", "480", "--out", str(out)],
                          cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    sessions = [s for p in report["points"] for s in p["sessions_detail"]]
    assert [p["sessions"] for p in report["points"]] == [1, 1, 1, 2]
    assert sum(p["mismatches"] for p in report["points"]) == 0
    rounds = sum(s["rounds"] for s in sessions)
    drafted = sum(s["rows"] for s in sessions) - rounds
    accepted = sum(s["committed"] for s in sessions) - rounds
    assert rounds >= 4 * 4  # the path was taken: every session ran rounds
    assert 0 < accepted < drafted  # drafts were accepted, and some rejected
    sampled = report["sampled"]
    assert sampled["draws"] == 480
    assert sampled["p_value"] > 1e-3, sampled  # one run in a thousand fails by chance
    assert 0 < sampled["accepted"] < sampled["draws"]  # the draft (p ~ 0.15) was both accepted and rejected
    assert sampled["p_value_accept_all"] < 1e-6


def test_the_sampled_chi_square_fails_on_vllms_cpu_expand_kernel_as_shipped(tmp_path: Path) -> None:
    out = tmp_path / "shipped.json"
    done = subprocess.run([sys.executable, "-m", "clients.bench.vllm_live", "--limit", "1", "--sessions",
                           "--sampled-draws", "160", "--as-vllm-ships-it", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(out.read_text())["sampled"]["p_value"] < 1e-6


def test_the_start_up_check_names_what_a_different_vllm_lacks() -> None:
    script = ("from vllm.v1.core.sched.scheduler import Scheduler\n"
              "del Scheduler._update_request_with_output\n"
              "from verifier.backends.vllm_live import check_internals\n"
              "check_internals()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 1
    assert "lacks what the live route needs (_update_request_with_output)" in done.stderr
    ok = subprocess.run([sys.executable, "-c", "from verifier.backends.vllm_live import check_internals\n"
                         "check_internals()"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
