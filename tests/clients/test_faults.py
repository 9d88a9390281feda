"""The fault matrix's verdict (``clients.faults``): an answer not identical to the no-fault one
fails the run and is named; the token ids read from the edge's answers, whole and streamed (an
in-memory transport and a fake rig: no servers)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import faults
from clients.faults import Outcome, Requests, difference


def outcome(ids: list[int] | None, text: str = "xyz", status: int = 200, error: str | None = None) -> Outcome:
    return Outcome(status, text, len(ids or []), 1.0, 0.1, error, ids)


REF = outcome([5, 6, 7])


def test_an_identical_answer_passes() -> None:
    assert difference(REF, outcome([5, 6, 7])) is None


@pytest.mark.parametrize(("got", "why"), [
    (outcome([5, 9, 7]), "token ids differ at position 1"),  # same text, other tokens
    (outcome([5, 6]), "token ids differ at position 2"),  # lost a token
    (outcome([5, 6, 7, 7]), "token ids differ at position 3"),  # a token twice
    (outcome([5, 6, 7], text="xy"), "a different text"),
    (outcome(None), "no token ids"),
    (outcome([5], status=503, error="verifier unavailable"), "HTTP 503: verifier unavailable"),
    (outcome([5, 6, 7], error="lost"), "error: lost"),
])
def test_what_is_not_identical(got: Outcome, why: str) -> None:
    found = difference(REF, got)
    assert found is not None and why in found


def test_a_failed_reference_fails_every_answer() -> None:
    found = difference(outcome(None, status=500, error="boom"), outcome([5, 6, 7]))
    assert found is not None and "no-fault answer itself failed: HTTP 500: boom" in found


def edge(handler: Callable[[dict[str, Any]], httpx.Response]) -> Requests:
    return Requests(httpx.Client(transport=httpx.MockTransport(lambda r: handler(json.loads(r.content))),
                                 base_url="http://edge.test"), 8)


def test_the_token_ids_of_a_whole_answer() -> None:
    def handler(body: dict[str, Any]) -> httpx.Response:
        assert body["return_token_ids"] is True and body["stream"] is False
        return httpx.Response(200, json={"choices": [{"message": {"content": "xyz"}, "token_ids": [5, 6, 7]}],
                                         "usage": {"completion_tokens": 3}})

    requests = edge(handler)
    got = requests.full(requests.body(sampled=False, stream=False), 0.0)
    assert (got.status, got.text, got.tokens, got.token_ids) == (200, "xyz", 3, [5, 6, 7])


def test_the_token_ids_of_a_stream_come_with_its_last_chunk() -> None:
    chunks = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"delta": {"content": "xy"}}]}, {"choices": [{"delta": {"content": "z"}}]},
              {"choices": [{"delta": {}, "finish_reason": "length", "token_ids": [5, 6, 7]}], "tandem": {}},
              {"choices": [], "usage": {"completion_tokens": 3}}]

    def handler(body: dict[str, Any]) -> httpx.Response:
        assert body["return_token_ids"] is True and body["seed"] == 11
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    requests = edge(handler)
    got = requests.stream(requests.body(sampled=True, stream=True), 0.0)
    assert (got.text, got.tokens, got.token_ids, got.error) == ("xyz", 3, [5, 6, 7], None)


class FakeRig:
    """Answers [5, 6, 7] to everything, except ``planted``: (fault, sampled, stream) -> answer."""

    def __init__(self, planted: dict[tuple[str, bool, bool], Outcome]) -> None:
        self.planted = planted
        self.current = ""
        self.stopped = False

    def fault(self, name: str) -> Callable[[], None]:
        def inject() -> None:
            self.current = name

        return inject

    def ask(self, sampled: bool, stream: bool, fault: Callable[[], None] | None) -> Outcome:
        self.current = ""
        if fault is not None:
            fault()
        return self.planted.get((self.current, sampled, stream), outcome([5, 6, 7]))

    def stop(self) -> None:
        self.stopped = True


def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rig: FakeRig) -> int:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the run's log folder
    return faults.main(["--faults", "kill,outage", "--max-tokens", "8"], lambda logs, max_tokens: rig)


def test_a_planted_mismatch_exits_1_and_names_the_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    rig = FakeRig({("outage", False, True): outcome([5, 6, 6, 7])})  # a token twice after the outage
    assert run(monkeypatch, tmp_path, rig) == 1 and rig.stopped
    out, err = capsys.readouterr()
    assert "| outage | greedy | stream | none | NO | 4/3 |" in out
    assert "| kill | greedy | stream | none | yes |" in out
    assert err.count("LOSSLESS CHECK FAILED") == 1
    assert "LOSSLESS CHECK FAILED: outage greedy stream: token ids differ at position 2" in err


def test_a_client_error_fails_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rig = FakeRig({("kill", True, False): outcome(None, status=503, error="verifier unavailable")})
    assert run(monkeypatch, tmp_path, rig) == 1
    assert "LOSSLESS CHECK FAILED: kill sampled full: HTTP 503: verifier unavailable" in capsys.readouterr().err


def test_identical_answers_exit_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, tmp_path, FakeRig({})) == 0
    assert "LOSSLESS CHECK FAILED" not in capsys.readouterr().err


def test_an_unknown_fault_is_refused_before_anything_starts() -> None:
    def never(logs: Path, max_tokens: int) -> FakeRig:
        raise AssertionError("started")

    with pytest.raises(SystemExit):
        faults.main(["--faults", "kill,meteor"], never)


class OnceWrongRig(FakeRig):
    """Wrong only the second time it answers ``case`` under its fault: a failure in one repeat of several."""

    def __init__(self, case: tuple[str, bool, bool]) -> None:
        super().__init__({})
        self.case = case
        self.seen = 0

    def ask(self, sampled: bool, stream: bool, fault: Callable[[], None] | None) -> Outcome:
        got = super().ask(sampled, stream, fault)
        if (self.current, sampled, stream) == self.case:
            self.seen += 1
            if self.seen == 2:
                return outcome([5, 7])
        return got


def test_a_mismatch_in_one_repeat_fails_the_run_and_the_record_says_which(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rig = OnceWrongRig(("kill", True, False))
    out_file = tmp_path / "matrix.json"
    code = faults.main(["--faults", "kill,outage", "--max-tokens", "8", "--repeats", "3", "--out", str(out_file)],
                       lambda logs, max_tokens: rig)
    out, err = capsys.readouterr()
    assert code == 1 and rig.seen == 3
    assert "| kill | sampled | full | none | NO (1 of 3) | 2/3 |" in out
    assert "| outage | greedy | stream | none | yes | 3/3 |" in out
    assert err.count("LOSSLESS CHECK FAILED") == 1
    assert "LOSSLESS CHECK FAILED: kill sampled full (repeat 1): token ids differ at position 1" in err
    records = json.loads(out_file.read_text())["runs"]
    assert len(records) == 3 * 2 * 4  # repeats x faults x (greedy, sampled) x (stream, full)
    wrong = [r for r in records if not r["identical"]]
    assert [(r["fault"], r["sampling"], r["request"], r["repeat"]) for r in wrong] == [("kill", "sampled", "full", 1)]
