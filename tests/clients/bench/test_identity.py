"""The bench's greedy identity check: token ids against cloud-only's, a planted mismatch caught,
and the token ids as the bench reads them from a stream (vLLM's shape, and the in-memory edge's)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from clients.bench.identity import first_difference, mismatches
from clients.bench.measure import MODES, BenchError, RequestResult, StreamReader
from tests.harness import start

LOSSLESS = {m.name for m in MODES.values() if m.lossless}


def result(mode: str, token_ids: list[int] | None, text: str = "abc", prompt_id: int = 0,
           tokens: int | None = None, repeat: int = 0) -> RequestResult:
    return RequestResult(scenario="lan", mode=mode, prompt_id=prompt_id, category="c", text=text,
                         completion_tokens=len(token_ids or []) if tokens is None else tokens, ttft_s=0.1,
                         total_s=1.0, delta_times_s=[0.1], stats={}, bytes_up=0, bytes_down=0, edge_cpu_s=0.0,
                         token_ids=token_ids, repeat=repeat)


def test_first_difference() -> None:
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2, 3], [1, 2]) == 2  # one a prefix of the other: where the shorter ends
    assert first_difference([], [4]) == 0


def test_identical_token_ids_pass() -> None:
    results = [result("cloud", [1, 2, 3]), result("tandem", [1, 2, 3]), result("vllm-serve", [1, 2, 3]),
               result("edge", [9, 9])]  # the draft alone is not lossless: never checked
    assert mismatches(results, LOSSLESS) == []


def test_a_planted_token_mismatch_is_caught_even_when_the_text_agrees() -> None:
    # the same text and the same count, other tokens: a text comparison would pass it
    results = [result("cloud", [1, 2, 3]), result("tandem", [1, 7, 3]), result("vanilla", [1, 2, 3])]
    found = mismatches(results, LOSSLESS)
    assert [(m.scenario, m.prompt_id, m.mode) for m in found] == [("lan", 0, "tandem")]
    assert "position 1" in found[0].reason and "[2, 3]" in found[0].reason and "[7, 3]" in found[0].reason
    assert "lan prompt 0 mode tandem" in found[0].describe()


def test_each_prompt_is_held_to_its_own_reference() -> None:
    results = [result("cloud", [1, 2], prompt_id=0), result("cloud", [5, 6], prompt_id=1),
               result("tandem", [5, 6], prompt_id=0), result("tandem", [5, 6], prompt_id=1)]
    assert [(m.prompt_id, m.mode) for m in mismatches(results, LOSSLESS)] == [(0, "tandem")]


def test_each_repeat_is_held_to_cloud_onlys_answer_in_the_same_repeat() -> None:
    results = [result("cloud", [1, 2], repeat=0), result("cloud", [1, 2], repeat=1),
               result("tandem", [1, 2], repeat=0), result("tandem", [1, 3], repeat=1),
               result("vanilla", [1, 2], repeat=2)]  # a repeat without a cloud-only answer cannot pass
    found = mismatches(results, LOSSLESS)
    assert [(m.mode, m.repeat) for m in found] == [("tandem", 1), ("vanilla", 2)]
    assert "lan prompt 0 mode tandem (repeat 1): token ids differ at position 1" in found[0].describe()
    assert found[1].reason == "no cloud result to compare with"


@pytest.mark.parametrize(("bad", "why"), [
    (result("tandem", None), "this mode returned no token ids"),
    (result("tandem", [1, 2], tokens=3), "2 token ids for 3 completion tokens"),
    (result("tandem", [1, 2, 3], text="abd"), "the same token ids, a different text"),
    (result("tandem", [1, 2, 3, 4]), "position 3"),
])
def test_what_cannot_be_checked_or_differs_fails(bad: RequestResult, why: str) -> None:
    found = mismatches([result("cloud", [1, 2, 3]), bad], LOSSLESS)
    assert len(found) == 1 and why in found[0].reason


def test_a_reference_without_token_ids_fails_every_mode() -> None:
    found = mismatches([result("cloud", None), result("tandem", [1, 2, 3])], LOSSLESS)
    assert {m.mode for m in found} == {"cloud", "tandem"}
    assert all("cloud returned no token ids" in m.reason for m in found)
    assert mismatches([result("tandem", [1])], LOSSLESS)[0].reason == "no cloud result to compare with"


def feed(reader: StreamReader, objects: list[dict[str, Any] | str]) -> StreamReader:
    for i, obj in enumerate(objects):
        reader.feed("data: " + (obj if isinstance(obj, str) else json.dumps(obj)), float(i))
        if reader.done:
            break
    return reader


def test_the_reader_joins_vllms_per_chunk_token_ids() -> None:
    chunk = lambda text, ids, finish=None: {"choices": [  # noqa: E731
        {"index": 0, "delta": {"content": text}, "token_ids": ids, "finish_reason": finish}]}
    reader = feed(StreamReader("vllm-serve", 0.0), [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "token_ids": None}]},
        chunk("He", [3]), chunk("llo", [4]), chunk("", [2], "stop"),
        {"choices": [], "usage": {"completion_tokens": 3}}, "[DONE]", chunk("late", [9])])
    assert reader.token_ids == [3, 4, 2] and "".join(reader.text) == "Hello" and reader.usage["completion_tokens"] == 3
    assert reader.times == [1.0, 2.0]


def test_the_reader_has_no_token_ids_when_none_came_and_raises_on_an_error() -> None:
    reader = feed(StreamReader("tandem", 0.0), [{"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}],
                                                 "tandem": {"rounds": 1}}])
    assert reader.token_ids is None and reader.stats == {"rounds": 1}
    with pytest.raises(BenchError, match="tandem: boom"):
        feed(StreamReader("tandem", 0.0), [{"error": {"message": "boom"}}])


def letters(ids: list[int]) -> str:
    """The harness's letter tokenizer: token t > 0 reads as chr(ord('a') + t - 1)."""
    return "".join(chr(ord("a") + t - 1) for t in ids)


def test_the_edge_returns_the_token_ids_the_bench_compares() -> None:
    """The in-memory edge, streamed and not, cloud-only and speculative: ``return_token_ids``
    gives the output token ids (as many as the usage counts, reading as the text); without it
    no choice carries any."""

    async def body() -> None:
        h = await start()
        http = h.edge_http()
        base = {"model": "bigram", "messages": [{"role": "user", "content": "hi"}], "temperature": 0,
                "max_tokens": 7, "return_token_ids": True}
        seen = []
        for tandem in ({"mode": "cloud"}, {"mode": "speculative", "gamma": 3}):
            resp = await http.post("/v1/chat/completions", json={**base, "tandem": tandem})
            full = resp.json()
            ids = full["choices"][0]["token_ids"]
            assert len(ids) == full["usage"]["completion_tokens"] == 7
            assert letters(ids) == full["choices"][0]["message"]["content"]
            reader = StreamReader(tandem["mode"], 0.0)
            async with http.stream("POST", "/v1/chat/completions",
                                   json={**base, "tandem": tandem, "stream": True,
                                         "stream_options": {"include_usage": True}}) as r:
                async for line in r.aiter_lines():
                    reader.feed(line, 0.0)
            assert reader.token_ids == ids and "".join(reader.text) == full["choices"][0]["message"]["content"]
            seen.append(ids)
        assert seen[0] == seen[1]
        text = (await http.post("/v1/completions", json={"model": "bigram", "prompt": "abc", "temperature": 0,
                                                         "max_tokens": 4, "return_token_ids": True})).json()
        assert letters(text["choices"][0]["token_ids"]) == text["choices"][0]["text"]
        plain = (await http.post("/v1/chat/completions", json={**base, "return_token_ids": False})).json()
        assert "token_ids" not in plain["choices"][0]
        streamed = await http.post("/v1/chat/completions", json={**base, "return_token_ids": None, "stream": True})
        chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        assert chunks and all("token_ids" not in c["choices"][0] for c in chunks)
        await h.aclose()

    asyncio.run(body())
