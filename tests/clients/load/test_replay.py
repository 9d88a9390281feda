"""Replayed edges against the in-memory verifier: the rounds a real edge sends, losslessness checked
(and an OpenAI-compatible server's answers, by their token ids, over an in-memory transport)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from clients.load.replay import (
    ReplayMismatch,
    UncheckedOutput,
    drafts_at,
    replay_speculative,
    stream_cloud,
    stream_openai,
)
from clients.load.trace import Trace
from tests.harness import greedy_continuation, start


def trace(prompt: list[int], n: int, wrong_at: set[int], conf: float = 0.9) -> Trace:
    """The bigram target's answer; the draft proposes the target's tokens except at ``wrong_at``."""
    target = greedy_continuation(prompt[-1], n)
    drafts, confs = [], []
    for p in range(n):
        row = []
        for j in range(4):
            truth = greedy_continuation(prompt[-1], p + j + 1)[-1]
            row.append((truth % 15) + 1 if p + j in wrong_at else truth)
        drafts.append(row)
        confs.append([conf, conf, 0.1, conf])
    return Trace(prompt, target, drafts, confs, 0.001)


def test_drafts_are_cut_by_gamma_and_confidence() -> None:
    t = trace([1, 2], 8, set())
    assert len(drafts_at(t, 0, 4, 0.0)) == 4
    assert len(drafts_at(t, 0, 4, 0.3)) == 2  # the third token's confidence is 0.1
    assert len(drafts_at(t, 0, 1, 0.3)) == 1


def test_a_replayed_edge_commits_the_targets_answer() -> None:
    async def body() -> None:
        h = await start()
        t = trace([1, 2], 12, wrong_at={1, 6})
        timing = await replay_speculative(h.channel, t, 12, 4, 0.0, None)
        assert timing.tokens == 12 and timing.accepted < timing.drafted and timing.rounds < 12
        cloud = await stream_cloud(h.client, t, 12, None)
        assert cloud.tokens == 12 and cloud.rounds == 12
        assert h.verifier.ready_engine().session_count == 0
        await h.aclose()

    asyncio.run(body())


def test_a_trace_that_is_not_the_targets_answer_is_caught() -> None:
    async def body() -> None:
        h = await start()
        t = trace([1, 2], 6, set())
        bad = Trace(t.prompt_token_ids, [9, *t.target_token_ids[1:]], t.draft_token_ids, t.confidences, 0.0)
        with pytest.raises(ReplayMismatch):
            await replay_speculative(h.channel, bad, 6, 4, 0.0, None)
        await h.aclose()

    asyncio.run(body())


def test_a_cloud_only_answer_that_is_not_the_targets_is_caught() -> None:
    async def body() -> None:
        h = await start()
        t = trace([1, 2], 6, set())
        bad = Trace(t.prompt_token_ids, [*t.target_token_ids[:4], 9, 9], t.draft_token_ids, t.confidences, 0.0)
        with pytest.raises(ReplayMismatch, match="position 4"):
            await stream_cloud(h.client, bad, 6, None)
        await h.aclose()

    asyncio.run(body())


def openai_server(token_ids: list[list[int]] | None) -> httpx.AsyncClient:
    """An OpenAI-compatible server in memory that streams one chunk per entry of ``token_ids``
    (vLLM's ``return_token_ids``: each chunk's own ids; None: a server that sends none)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["return_token_ids"] is True and body["ignore_eos"] is True and body["max_tokens"] == 4
        pieces = token_ids if token_ids is not None else [[0]] * 4
        chunks = [{"choices": [{"index": 0, "text": "x" * len(ids), "finish_reason": None,
                                **({"token_ids": ids} if token_ids is not None else {})}]} for ids in pieces]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://openai.test")


def test_an_openai_servers_answer_is_checked_by_token_ids() -> None:
    t = trace([1, 2], 4, set())
    right = [[x] for x in t.target_token_ids]

    async def ask(token_ids: list[list[int]] | None) -> int:
        async with openai_server(token_ids) as http:
            return (await stream_openai(http, "m", t, 4)).tokens

    async def body() -> None:
        assert await ask(right) == 4
        assert await ask([right[0] + right[1], right[2], right[3]]) == 4  # two tokens in one chunk: both counted
        planted = [*right[:2], [right[2][0] % 15 + 1], right[3]]
        with pytest.raises(ReplayMismatch, match="recorded target answer: token ids differ at position 2"):
            await ask(planted)
        with pytest.raises(ReplayMismatch, match="position 3"):
            await ask(right[:3])  # a token short
        with pytest.raises(UncheckedOutput):
            await ask(None)

    asyncio.run(body())
