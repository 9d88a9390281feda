"""``tandem-bench``'s exit status: its main run with fake processes and a planted mismatch in the
answers (no servers: the testbed, the relays and the requests are stand-ins)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clients.bench import cli
from clients.bench.measure import Mode, RequestResult


class FakeCounters:
    bytes_up = 0
    bytes_down = 0


class FakeRelay:
    def __init__(self, link: object, upstream_port: int) -> None:
        self.port = upstream_port + 1
        self.counters = FakeCounters()

    def restart_clock(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FakeStoppable:
    pid = 1

    def stop(self) -> None:
        pass


class FakeTestbed:
    verifier_port = 9000

    def __init__(self, *args: object) -> None:
        pass

    def start_verifier(self) -> None:
        pass

    def start_vllm_server(self) -> int:
        return 9100

    def start_edge(self, sc: object, relay: object, draft: object, tag: str) -> tuple[object, object, str]:
        return FakeStoppable(), FakeStoppable(), f"http://edge-{tag}.test"

    def stop(self) -> None:
        pass


def answers(planted: dict[str, list[int]]) -> Callable[..., RequestResult]:
    """A stand-in for ``run_request``: every mode answers [5, 6, 7] ("xyz"), except those in ``planted``."""

    def run_request(url: str, messages: object, mode: Mode, max_tokens: int, counters: object, cpu: object,
                    scenario: str, prompt_id: int, category: str, repeat: int = 0) -> RequestResult:
        ids = planted.get(mode.name, [5, 6, 7])
        return RequestResult(scenario=scenario, mode=mode.name, prompt_id=prompt_id, category=category, text="xyz",
                             completion_tokens=len(ids), ttft_s=0.01, total_s=0.1, delta_times_s=[0.01, 0.05, 0.1],
                             stats={}, bytes_up=0, bytes_down=0, edge_cpu_s=0.0, token_ids=ids, repeat=repeat)

    return run_request


def run(monkeypatch: pytest.MonkeyPatch, out: Path, planted: dict[str, list[int]]) -> int:
    monkeypatch.setattr(cli, "Testbed", FakeTestbed)
    monkeypatch.setattr(cli, "RelayThread", FakeRelay)
    monkeypatch.setattr(cli, "run_request", answers(planted))
    monkeypatch.setattr(cli, "_draft_path", lambda name: name)
    return cli.main(["--quick", "--no-plots", "--modes", "cloud,edge,tandem,vllm-serve", "--verifier-cpus", "",
                     "--edge-cpus", "", "--limit", "2", "--out", str(out)])


def test_a_planted_mismatch_exits_1_and_names_the_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # the same text and count as cloud-only, one token different: only a token-id check sees it
    status = run(monkeypatch, tmp_path, {"tandem": [5, 8, 7], "edge": [1, 2, 3]})
    assert status == 1
    err = capsys.readouterr().err
    assert "LOSSLESS CHECK FAILED: lan prompt 0 mode tandem (repeat 0): token ids differ at position 1" in err
    assert "prompt 1 mode tandem" in err and "mode edge" not in err  # the draft alone is not held to it
    report: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert report["lossless_ok"] is False
    assert [(m["prompt_id"], m["mode"]) for m in report["mismatches"]] == [(0, "tandem"), (1, "tandem")]
    assert "**FAIL** (2 mismatches)" in (tmp_path / "results.md").read_text()


def test_identical_answers_exit_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert run(monkeypatch, tmp_path, {"edge": [1, 2, 3]}) == 0
    assert json.loads((tmp_path / "results.json").read_text())["lossless_ok"] is True


def test_a_server_without_token_ids_fails_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "Testbed", FakeTestbed)
    monkeypatch.setattr(cli, "RelayThread", FakeRelay)
    plain = answers({})

    def no_ids(*args: Any, **kwargs: Any) -> RequestResult:
        r = plain(*args, **kwargs)
        if r.mode == "vllm-serve":
            r.token_ids = None
        return r

    monkeypatch.setattr(cli, "run_request", no_ids)
    monkeypatch.setattr(cli, "_draft_path", lambda name: name)
    status = cli.main(["--quick", "--no-plots", "--modes", "cloud,vllm-serve", "--verifier-cpus", "", "--edge-cpus",
                       "", "--limit", "1", "--out", str(tmp_path)])
    assert status == 1 and "mode vllm-serve (repeat 0): this mode returned no token ids" in capsys.readouterr().err


def test_every_repeat_is_checked_and_summarised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Two repeats: tandem's answer is wrong in the second only, and vllm-serve (the default baseline
    when it runs) is twice as slow as cloud-only in the first repeat only."""
    monkeypatch.setattr(cli, "Testbed", FakeTestbed)
    monkeypatch.setattr(cli, "RelayThread", FakeRelay)
    monkeypatch.setattr(cli, "_draft_path", lambda name: name)
    plain = answers({})
    calls: list[tuple[int, int, str]] = []

    def by_repeat(*args: Any, repeat: int = 0) -> RequestResult:
        r = plain(*args, repeat=repeat)
        if r.prompt_id >= 0:  # not the warm-up
            calls.append((repeat, r.prompt_id, r.mode))
        if r.mode == "tandem" and repeat == 1:
            r.token_ids = [5, 6, 9]
        if r.mode == "vllm-serve" and repeat == 0:
            r.total_s = 0.2
        return r

    monkeypatch.setattr(cli, "run_request", by_repeat)
    status = cli.main(["--no-plots", "--scenario", "lan", "--modes", "cloud,tandem,vllm-serve", "--verifier-cpus", "",
                       "--edge-cpus", "", "--limit", "2", "--repeats", "2", "--out", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert "lan prompt 0 mode tandem (repeat 1): token ids differ at position 2" in err
    assert "(repeat 0)" not in err
    assert len(calls) == 2 * 2 * 3 and [c[:2] for c in calls[:3]] == [(0, 0)] * 3  # repeat by repeat, side by side
    assert {c[2] for c in calls if c[:2] == (0, 0)} == {"cloud", "tandem", "vllm-serve"}
    report: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert report["repeats"] == 2 and report["baseline"] == "vllm-serve"
    assert len(report["machine"]["load_average_start"]) == 3 and len(report["machine"]["load_average_end"]) == 3
    lan = report["scenarios"]["lan"]
    assert lan["baseline"] == "vllm-serve"
    cloud = lan["modes"]["cloud"]
    assert cloud["tokens_per_s_spread"]["values"] == [30.0, 30.0]  # 3 tokens in 0.1 s, each repeat
    assert cloud["vs_baseline"]["values"] == [2.0, 1.0] and cloud["vs_baseline"]["median"] == 1.5
    assert lan["modes"]["vllm-serve"]["vs_cloud"]["values"] == [0.5, 1.0]
    assert set(lan["categories"]["tandem"]) == {r.category for r in cli.load_prompts(cli.DEFAULT_PROMPTS, 2)}
    md = (tmp_path / "results.md").read_text()
    assert "| cloud | 30.00 [30.00-30.00] | 1.500 [1.000-2.000] | 1.000 [1.000-1.000] |" in md
    assert "Per category (lan):" in md and "Load average" in md
