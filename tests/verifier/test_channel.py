"""The verifier's channel connection driven frame by frame: per-edge quotas."""

from __future__ import annotations

import asyncio

from tests.harness import BigramBackend, start
from verifier.channel import ChannelConnection, EdgeQuota
from verifier.core.wire import Close, Failed, Open, Round, Verified, VerifierFrame, decode_verifier_frame, encode


class Wire:
    """Both ends of one connection: frames the edge sends, frames it got back."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.got: asyncio.Queue[VerifierFrame] = asyncio.Queue()

    async def send_back(self, data: bytes) -> None:
        self.got.put_nowait(decode_verifier_frame(data))

    def push(self, *frames: Open | Round | Close) -> None:
        for f in frames:
            self.inbound.put_nowait(encode(f))

    async def next(self) -> VerifierFrame:
        return await asyncio.wait_for(self.got.get(), 5)


def test_an_edge_over_its_session_quota_gets_429_and_sessions_free_their_place() -> None:
    async def body() -> None:
        h = await start(BigramBackend())
        quota = EdgeQuota(max_sessions=2)
        wires = [Wire(), Wire()]  # two connections of one edge share its quota
        serving = [asyncio.create_task(ChannelConnection(h.verifier.ready_engine(), w.send_back, quota)
                                       .serve(w.inbound.get)) for w in wires]
        wires[0].push(Open(sid=1, prompt_token_ids=[1]), Open(sid=2, prompt_token_ids=[2]))
        wires[1].push(Open(sid=1, prompt_token_ids=[3]))
        refused = await wires[1].next()
        assert isinstance(refused, Failed) and refused.status == 429 and refused.code == "too_many_sessions"
        assert refused.retry_after_ms > 0
        wires[0].push(Round(sid=1, seq=1, epoch=0, start=1, draft_token_ids=[]))
        answer = await wires[0].next()
        assert isinstance(answer, Verified) and answer.sid == 1
        wires[0].push(Close(sid=2))
        for _ in range(50):  # the closed session gives its place back
            await asyncio.sleep(0.01)
            if quota.sessions == 1:
                break
        wires[1].push(Open(sid=5, prompt_token_ids=[3]), Round(sid=5, seq=1, epoch=0, start=1, draft_token_ids=[]))
        again = await wires[1].next()
        assert isinstance(again, Verified) and again.sid == 5
        for w in wires:
            w.inbound.put_nowait(None)
        await asyncio.gather(*serving)
        assert quota.sessions == 0 and h.verifier.ready_engine().session_count == 0
        await h.aclose()

    asyncio.run(body())


def test_a_session_flooding_rounds_is_ended_with_429() -> None:
    async def body() -> None:
        h = await start(BigramBackend(pass_s=0.05))
        quota = EdgeQuota(max_queued_rounds=3)
        w = Wire()
        serving = asyncio.create_task(ChannelConnection(h.verifier.ready_engine(), w.send_back, quota)
                                      .serve(w.inbound.get))
        w.push(Open(sid=1, prompt_token_ids=[1]),
               *[Round(sid=1, seq=i, epoch=0, start=i, draft_token_ids=[]) for i in range(1, 10)])
        frames = [await w.next()]
        while not isinstance(frames[-1], Failed):
            frames.append(await w.next())
        assert frames[-1].code == "too_many_rounds" and frames[-1].status == 429  # type: ignore[union-attr]
        w.inbound.put_nowait(None)
        await serving
        assert quota.sessions == 0
        await h.aclose()

    asyncio.run(body())


def test_a_round_sent_in_held_batches_is_scored_once_whole() -> None:
    async def body() -> None:
        h = await start(BigramBackend())
        w = Wire()
        serving = asyncio.create_task(ChannelConnection(h.verifier.ready_engine(), w.send_back).serve(w.inbound.get))
        # the target's greedy continuation of [1] is 2, 3, 4, 5, 6: the round drafts 2 3 4 5 9 in three batches
        w.push(Open(sid=1, prompt_token_ids=[1]),
               Round(sid=1, seq=1, epoch=0, start=1, draft_token_ids=[2, 3], held=True),
               Round(sid=1, seq=1, epoch=0, start=3, draft_token_ids=[4], held=True))
        await asyncio.sleep(0.05)
        assert w.got.empty()  # held: nothing answered yet
        w.push(Round(sid=1, seq=1, epoch=0, start=4, draft_token_ids=[5, 9]))
        answer = await w.next()
        assert isinstance(answer, Verified) and (answer.seq, answer.accepted, answer.next_token_id) == (1, 4, 6)
        assert answer.committed_tokens == 6
        # held batches that the next frame does not continue (another start) are dropped, not scored
        w.push(Round(sid=1, seq=2, epoch=1, start=6, draft_token_ids=[7, 8], held=True),
               Round(sid=1, seq=2, epoch=1, start=6, draft_token_ids=[7]))
        again = await w.next()
        assert isinstance(again, Verified) and (again.accepted, again.next_token_id, again.committed_tokens) == \
            (1, 8, 8)
        w.inbound.put_nowait(None)
        await serving
        await h.aclose()

    asyncio.run(body())
