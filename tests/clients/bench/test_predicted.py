"""``tandem-bench-predicted`` without servers: the edit workload, the rotation of the three cases,
the wrong-prediction pairing, the greedy identity check (and the exit status it sets), the ratio
and target arithmetic on hand-made results, and the SDK stream as the bench reads it."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from clients.bench import predicted
from clients.bench.cli import schedule
from clients.bench.edits import (
    CASES,
    EditItem,
    EditResult,
    case_modes,
    identity_failures,
    load_edits,
    pair_ratios,
    prediction_figures,
    prediction_for,
    scenario_summary,
    targets,
    wrong_partner,
)
from clients.bench.predicted import DEFAULT_PROMPTS, EditStream, document_tokens, parse, reproduce, request
from tests.harness import EDGE_URL, start


def result(case: str, token_ids: list[int] | None, *, item: int = 0, repeat: int = 0, total_s: float = 1.0,
           text: str = "abc", scenario: str = "lan", accepted: int | None = None, rejected: int | None = None,
           stats: dict[str, Any] | None = None) -> EditResult:
    return EditResult(scenario=scenario, mode=case, prompt_id=item, category="code", text=text,
                      completion_tokens=len(token_ids or []), ttft_s=0.1, total_s=total_s, delta_times_s=[0.1],
                      stats=stats or {}, bytes_up=0, bytes_down=0, edge_cpu_s=0.0, token_ids=token_ids,
                      repeat=repeat, item_id=f"item{item}", accepted_prediction_tokens=accepted,
                      rejected_prediction_tokens=rejected)


def test_the_workload_has_8_to_12_documents_of_300_to_600_tokens() -> None:
    items = load_edits(DEFAULT_PROMPTS)
    assert 8 <= len(items) <= 12
    assert len({x.id for x in items}) == len(items)
    assert set(Counter(x.category for x in items)) == {"code", "text"}
    tokens = document_tokens(items)  # the draft's vocabulary, as the bench counts them for max_tokens
    assert all(300 <= n <= 600 for n in tokens), dict(zip([x.id for x in items], tokens))
    for x in items:
        assert "Output only" in x.instruction and x.document not in x.instruction
        assert x.message("document-first") == f"{x.document}\n\n{x.instruction}"


def test_duplicate_ids_and_a_single_item_are_refused(tmp_path: Path) -> None:
    row = {"id": "a", "category": "code", "instruction": "Rename x.", "document": "x = 1\n"}
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="duplicate ids"):
        load_edits(path)
    with pytest.raises(ValueError, match="at least two"):
        load_edits(DEFAULT_PROMPTS, limit=1)
    path.write_text(json.dumps({**row, "category": "poem"}) + "\n")
    with pytest.raises(ValueError, match="category"):
        load_edits(path)


@pytest.mark.parametrize("n", range(2, 21))
def test_a_wrong_prediction_is_never_the_items_own_document(n: int) -> None:
    partners = [wrong_partner(i, n) for i in range(n)]
    assert all(p != i for i, p in enumerate(partners))
    assert sorted(partners) == list(range(n))  # every document is some item's wrong prediction, once
    with pytest.raises(ValueError):
        wrong_partner(0, 1)


def test_each_case_sends_its_prediction() -> None:
    items = load_edits(DEFAULT_PROMPTS)
    for i, x in enumerate(items):
        assert prediction_for("none", items, i) is None
        assert prediction_for("predicted", items, i) == x
        wrong = prediction_for("wrong", items, i)
        assert wrong is not None and wrong.id != x.id and wrong.document != x.document
        answers = [f"answer {j}" for j in range(len(items))]
        own = prediction_for("own", items, i, answers)
        assert own is not None and own.document == f"answer {i}" and own.id == f"{x.id}#own"


@pytest.mark.parametrize(("items", "repeats"), [(10, 3), (4, 3), (2, 3), (3, 2)])
def test_rotation_gives_each_case_each_position(items: int, repeats: int) -> None:
    modes = case_modes("auto")
    runs = schedule(items, repeats, modes)
    assert [(r, p) for r, p, _ in runs] == [(r, p) for r in range(repeats) for p in range(items)]
    assert all(sorted(m.name for m in order) == sorted(CASES) for _, _, order in runs)
    for case in CASES:
        assert {[m.name for m in order].index(case) for _, _, order in runs} == set(range(len(CASES))), case
    assert all(m.tandem == {"mode": "auto"} and m.lossless for m in modes)  # only the prediction differs


def test_equal_token_ids_pass_the_identity_check() -> None:
    results = [result(c, [1, 2, 3], item=i, repeat=r) for c in CASES for i in range(2) for r in range(2)]
    assert identity_failures(results) == []


def test_a_planted_mismatch_is_caught_in_its_own_item_and_repeat() -> None:
    results = [result(c, [1, 2, 3], item=i, repeat=r) for c in CASES for i in range(2) for r in range(2)]
    results.append(result("predicted", [1, 9, 3], item=1, repeat=1, scenario="lan"))
    results = [r for r in results if not (r.mode == "predicted" and r.prompt_id == 1 and r.repeat == 1
                                          and r.token_ids == [1, 2, 3])]
    found = identity_failures(results)
    assert [(m.prompt_id, m.repeat, m.mode) for m in found] == [(1, 1, "predicted")]
    assert "position 1" in found[0].reason


@pytest.mark.parametrize(("bad", "why"), [
    (result("wrong", None), "this case returned no token ids"),
    (result("wrong", [1, 2, 3], text="abd"), "the same token ids, a different text"),
    (result("wrong", [1, 2]), "position 2"),
])
def test_what_cannot_be_checked_or_differs_fails(bad: EditResult, why: str) -> None:
    found = identity_failures([result("none", [1, 2, 3]), result("predicted", [1, 2, 3]), bad])
    assert len(found) == 1 and why in found[0].reason


def test_without_the_reference_nothing_passes() -> None:
    found = identity_failures([result("predicted", [1]), result("wrong", [1])])
    assert {m.mode for m in found} == {"predicted", "wrong"}
    assert all(m.reason == "no none result to compare with" for m in found)


def hand_made() -> list[EditResult]:
    """Two items, two repeats, 100 tokens each: none takes 2 s, predicted 0.8 s (2.5x) but 1.25 s
    (1.6x) on item 1 repeat 1, wrong 2.1 s (0.952x) but 2.5 s (0.8x) on item 0 repeat 0."""
    ids = list(range(100))
    out = []
    for i in range(2):
        for r in range(2):
            out.append(result("none", ids, item=i, repeat=r, total_s=2.0, stats={"path": "speculative"}))
            out.append(result("predicted", ids, item=i, repeat=r, total_s=1.25 if (i, r) == (1, 1) else 0.8,
                              accepted=90, rejected=10, stats={"path": "speculative", "prediction_drafted": 95,
                                                               "prediction_accepted": 90}))
            out.append(result("wrong", ids, item=i, repeat=r, total_s=2.5 if (i, r) == (0, 0) else 2.1,
                              accepted=0, rejected=400, stats={"path": "cloud"}))
    return out


def test_ratios_are_taken_per_item_and_repeat() -> None:
    results = hand_made()
    assert sorted(pair_ratios(results, "predicted")) == pytest.approx([1.6, 2.5, 2.5, 2.5])
    assert sorted(pair_ratios(results, "wrong")) == pytest.approx([0.8, 2 / 2.1, 2 / 2.1, 2 / 2.1])
    assert pair_ratios(results, "none") == pytest.approx([1.0] * 4)


def test_targets_by_profile() -> None:
    results = hand_made()
    lan = targets("lan", results)
    assert [(t.case, t.threshold, t.passed) for t in lan] == [("predicted", 2.0, True), ("wrong", 0.95, True)]
    assert lan[0].ratio.median == pytest.approx(2.5) and lan[0].ratio.min == pytest.approx(1.6)
    assert lan[0].line().startswith("PASS: lan predicted/none >= 2x: median 2.500x [1.600-2.500] over 4")
    assert "1 below" in lan[1].line()  # the median holds, one pair falls short
    slow = [EditResult(**{**vars(r), "total_s": 1.6}) if r.mode == "predicted" else r for r in results]
    assert [t.passed for t in targets("lan", slow)] == [False, True]  # 1.25x < 2x
    assert [t.passed for t in targets("broadband", slow)] == [False, True]  # 1.25x < 1.5x
    assert [(t.case, t.passed) for t in targets("mobile", slow)] == [("wrong", True)]  # no speed-up target there
    assert not targets("lan", [])[0].passed  # nothing measured fails


def test_prediction_figures_and_the_summary() -> None:
    results = hand_made()
    fig = prediction_figures([r for r in results if r.mode == "predicted"])
    assert fig["prediction_acceptance"] == 0.9 and fig["edge_prediction_acceptance"] == round(90 / 95, 4)
    assert fig["output_from_prediction"] == 0.9 and fig["usage_reported"] == 4
    assert prediction_figures([r for r in results if r.mode == "none"])["usage_reported"] == 0
    summary = scenario_summary("lan", results + [result("none", [1], scenario="broadband")], case_modes("auto"), 0.001)
    cases = summary["cases"]
    assert cases["none"]["tokens_per_s_spread"]["median"] == 50.0 and "vs_baseline" not in cases["none"]
    assert cases["predicted"]["tokens_per_s_spread"]["values"] == [125.0, 125.0, 125.0, 80.0]
    assert cases["predicted"]["vs_baseline"]["median"] == 2.5
    assert cases["wrong"]["paths"] == {"cloud": 4} and cases["none"]["requests"] == 4  # broadband's left out
    assert [t["passed"] for t in summary["targets"]] == [True, True]


def test_a_mismatch_makes_the_command_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    planted = hand_made()
    planted[1] = EditResult(**{**vars(planted[1]), "token_ids": [7] + list(range(1, 100))})
    for results, status in ((hand_made(), 0), (planted, 1)):
        monkeypatch.setattr(predicted, "collect", lambda *_, results=results: results)
        out = tmp_path / f"run{status}"
        assert predicted.main(["--scenario", "lan", "--limit", "2", "--repeats", "2", "--out", str(out)]) == status
        saved = json.loads((out / "results.json").read_text())
        assert saved["lossless_ok"] is (status == 0) and len(saved["requests"]) == 12
        assert saved["requests"][0]["tokens_per_s"] == 50.0
    printed = capsys.readouterr()
    assert "PASS: lan predicted/none >= 2x" in printed.out and "reproduce: tandem-bench-predicted" in printed.out
    assert "LOSSLESS CHECK FAILED: lan prompt 0 mode predicted (repeat 0): token ids differ at position 0" \
        in printed.err


def test_the_reproducing_command_parses_back_to_the_same_settings() -> None:
    args = parse(["--scenario", "broadband", "--limit", "3", "--verifier-cpus", "", "--mode", "speculative"])
    line = reproduce(args)
    assert line.startswith("tandem-bench-predicted --scenario broadband --prompts clients/prompts/edits.jsonl")
    again = parse(shlex.split(line)[1:])
    assert {**vars(again), "prompts": again.prompts.resolve()} == {**vars(args), "prompts": args.prompts.resolve()}


def chunk(choices: list[dict[str, Any]], **extra: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                               "model": "m", "choices": choices, **extra})


def test_the_stream_as_the_sdk_hands_it_over() -> None:
    reader = EditStream(t0=10.0)
    reader.feed(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]), 10.05)
    reader.feed(chunk([{"index": 0, "delta": {"content": "x = "}}]), 10.2)
    reader.feed(chunk([{"index": 0, "delta": {"content": "1"}, "token_ids": [5]}]), 10.3)  # vLLM: per chunk
    reader.feed(chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "token_ids": [6, 7]}],
                      tandem={"mode": "auto", "path": "speculative", "prediction_drafted": 3}), 10.4)
    assert reader.prediction_counts() == (None, None)
    reader.feed(chunk([], usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                                 "completion_tokens_details": {"accepted_prediction_tokens": 2,
                                                               "rejected_prediction_tokens": 1}}), 10.5)
    assert "".join(reader.text) == "x = 1" and reader.times == pytest.approx([0.2, 0.3])  # TTFT: first text
    assert reader.token_ids == [5, 6, 7] and reader.stats["prediction_drafted"] == 3
    assert reader.prediction_counts() == (2, 1) and reader.usage is not None and reader.usage.completion_tokens == 3


def test_an_item_reads_as_one_user_message_in_either_form() -> None:
    x = EditItem("a", "text", "Fix the typo.", "Helo world.\n")
    assert x.message("document-first") == "Helo world.\n\n\nFix the typo."
    assert x.message("instruction-first") == "Fix the typo.\n\nHelo world.\n"
    with pytest.raises(ValueError, match="unknown form"):
        x.message("sideways")


def test_the_sdk_request_round_trips_through_the_in_memory_edge() -> None:
    """What ``run_edit`` sends, through the real OpenAI SDK to the in-memory edge and read back by
    ``EditStream``: the token ids on the choice's last chunk, the ``tandem`` statistics, the usage.
    With a prediction, right or wrong, the edge must give the same greedy token ids (issue 29)."""
    items = [EditItem("a", "text", "Copy it.", "abcabcabcabc"), EditItem("b", "text", "Copy it.", "onmlkjihgf")]

    async def body() -> dict[str, EditStream]:
        h = await start()
        # the SDK takes an httpx client as well as the httpx2 one its types name
        client = AsyncOpenAI(base_url=f"{EDGE_URL}/v1", api_key="not-needed",
                             http_client=h.edge_http(), max_retries=0)  # type: ignore[arg-type]
        readers: dict[str, EditStream] = {}
        try:
            for case in case_modes("speculative"):
                reader = readers[case.name] = EditStream(0.0)
                args = {**request(items[0], prediction_for(case.name, items, 0), case, 9, "document-first"),
                        "model": "bigram"}
                stream = await client.chat.completions.create(stream=True, **args)
                async for c in stream:
                    reader.feed(c, 1.0)
        finally:
            await h.aclose()
        return readers

    readers = asyncio.run(body())
    none = readers["none"]
    assert none.token_ids is not None and none.usage is not None and len(none.token_ids) == none.usage.completion_tokens
    assert none.stats.get("mode") is not None and none.prediction_counts()[0] in (None, 0)
    for case in ("predicted", "wrong"):
        assert readers[case].token_ids == none.token_ids and "".join(readers[case].text) == "".join(none.text), case
    assert readers["predicted"].prediction_counts()[0] is not None  # the usage reports the prediction's tokens
