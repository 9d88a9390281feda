"""Replayed edges against the in-memory verifier: the rounds a real edge sends, losslessness checked."""

from __future__ import annotations

import asyncio

import pytest

from clients.load.replay import ReplayMismatch, drafts_at, replay_speculative, stream_cloud
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
