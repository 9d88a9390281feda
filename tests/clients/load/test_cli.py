"""``tandem-load``'s verdict: an answer that is not the target's is a lossless failure, named, and
the run exits 1 (one request in memory per mode: the replayed edge and cloud-only on the in-memory
verifier, an OpenAI-compatible server over an in-memory transport)."""

from __future__ import annotations

import asyncio

import pytest

from clients.load.cli import exit_status, one_request, parse
from clients.load.replay import RequestTiming
from clients.load.report import lossless_failures, summarise
from clients.load.trace import Trace
from tests.clients.load.test_replay import openai_server, trace
from tests.harness import start
from verifier.core.protocol import SloTargets


def planted(t: Trace) -> Trace:
    """``t`` with its recorded answer wrong at position 2."""
    target = [*t.target_token_ids[:2], t.target_token_ids[2] % 15 + 1, *t.target_token_ids[3:]]
    return Trace(t.prompt_token_ids, target, t.draft_token_ids, t.confidences, 0.0)


@pytest.mark.parametrize("mode", ["tandem", "cloud"])
def test_a_planted_mismatch_is_a_lossless_failure_of_the_tandem_and_cloud_modes(mode: str) -> None:
    args = parse(["--max-tokens", "4"])

    async def body() -> None:
        h = await start()
        t = trace([1, 2], 4, set())
        good = await one_request(mode, args, h.client, h.channel, None, t, SloTargets(), 0)
        assert good.error is None and good.mismatch is None and good.tokens == 4
        bad = await one_request(mode, args, h.client, h.channel, None, planted(t), SloTargets(), 5)
        assert bad.error is not None and bad.mismatch is not None
        assert bad.mismatch.startswith(f"{mode}, prompt 5: ")
        await h.aclose()

    asyncio.run(body())


def test_a_planted_mismatch_is_a_lossless_failure_of_the_openai_mode() -> None:
    args = parse(["--max-tokens", "4", "--openai-url", "http://openai.test"])
    t = trace([1, 2], 4, set())

    async def ask(token_ids: list[list[int]] | None) -> RequestTiming:
        async with openai_server(token_ids) as http:
            return await one_request("openai", args, None, None, http, t, SloTargets(), 3)  # type: ignore[arg-type]

    good = asyncio.run(ask([[x] for x in t.target_token_ids]))
    assert good.error is None and good.mismatch is None
    bad = asyncio.run(ask([[x] for x in planted(t).target_token_ids]))
    assert bad.mismatch is not None and bad.mismatch.startswith("openai, prompt 3: ")
    assert "position 2" in bad.mismatch
    unchecked = asyncio.run(ask(None))  # no token ids: an error, not a verdict on losslessness
    assert unchecked.error is not None and "UncheckedOutput" in unchecked.error and unchecked.mismatch is None


def test_lossless_failures_exit_1_and_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    ok = RequestTiming(0.0, [0.1, 0.2])
    bad = RequestTiming(0.0, error="ReplayMismatch: ...", mismatch="tandem, prompt 1: position 3: ...")
    point = summarise("tandem", 2, [ok, bad], 1.0, [200.0], None)
    assert (point.errors, point.mismatches) == (1, 1)
    failures = lossless_failures([ok, bad], "tandem/2 clients")
    assert failures == ["tandem/2 clients: tandem, prompt 1: position 3: ..."]
    assert exit_status([point], failures) == 1
    assert "LOSSLESS CHECK FAILED: tandem/2 clients: tandem, prompt 1" in capsys.readouterr().err
    # a warm-up mismatch alone (its point not counted) still fails the run
    clean = summarise("tandem", 1, [ok], 1.0, [200.0], None)
    assert exit_status([clean], ["tandem warm-up: tandem, prompt 0: ..."]) == 1
    assert exit_status([clean], []) == 0


def test_slos_and_repeats_defaults() -> None:
    args = parse([])
    assert args.tpot_slo_ms == [150.0, 250.0, 400.0] and args.repeats == 3
    assert args.session_tpot_ms is None  # the sessions take the verifier's own default target
    assert parse(["--tpot-slo-ms", "100", "300", "--repeats", "5"]).tpot_slo_ms == [100.0, 300.0]
    assert parse(["--quick"]).repeats == 1 and parse(["--quick", "--repeats", "2"]).repeats == 2
    with pytest.raises(SystemExit):
        parse(["--repeats", "0"])
