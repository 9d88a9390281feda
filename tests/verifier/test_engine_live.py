"""The engine's live route over a fake live backend (a fake for this one module's unit test; the
real one, vLLM's, is driven in tests/verifier/backends/test_vllm_live_route.py): which sessions go
live, how rounds are committed and reported, every way a session ends closing its live request,
and the move to the row route when the live KV share runs out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import numpy as np
import pytest

from tests.harness import BigramBackend, FakeClock, V, bigram_logits, next_round, until
from verifier.backends.base import LiveHandle, LiveRoute, NativeDecoder
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import GenerateRequest, SamplingParams, SessionCreate
from verifier.engine import EngineError, VerifierEngine


class FakeLive(LiveHandle):
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    @property
    def length(self) -> int:
        return self.tokens


class LiveBigram(BigramBackend, LiveRoute):
    """The bigram target with a live route that verifies greedily by the same bigram; ``fits``:
    the longest session the live KV share holds; ``fail_round``: the live round that raises;
    ``gate``: when given, every live round waits for it (the test opens it)."""

    def __init__(self, fits: int = 10_000, fail_round: int | None = None, gate: asyncio.Event | None = None) -> None:
        super().__init__()
        self.fits = fits
        self.fail_round = fail_round
        self.gate = gate
        self.opened = 0
        self.closed = 0
        self.live_rounds = 0
        self.open_handles: set[int] = set()

    def live_refusal(self, req: SessionCreate) -> str | None:
        if req.sampling.processing().active:
            return "logits processing"
        return None

    async def open_live(self, prompt_token_ids: list[int], sampling: SamplingParams) -> LiveHandle:
        self.opened += 1
        handle = FakeLive(len(prompt_token_ids) - 1)
        self.open_handles.add(id(handle))
        return handle

    def live_round(self, handle: LiveHandle, last_token: int, drafts: list[int]) -> asyncio.Future[list[int]]:
        self.live_rounds += 1
        index = self.live_rounds

        async def run() -> list[int]:
            if self.gate is not None:
                await self.gate.wait()
            if index == self.fail_round:
                raise RuntimeError("engine died")
            out, prev = [], last_token
            for d in drafts:
                want = int(np.argmax(bigram_logits(prev)))
                if d != want:
                    break
                out.append(d)
                prev = d
            out.append(int(np.argmax(bigram_logits(prev))))
            assert isinstance(handle, FakeLive)
            handle.tokens += len(out)
            return out

        return asyncio.ensure_future(run())

    def live_fits(self, handle: LiveHandle, new_length: int) -> bool:
        return new_length <= self.fits

    def close_live(self, handle: LiveHandle) -> asyncio.Future[None]:
        self.closed += 1
        self.open_handles.discard(id(handle))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    @property
    def live_sessions(self) -> int:
        return len(self.open_handles)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _session(engine: VerifierEngine, prompt: list[int], **sampling: float) -> str:
    created = await engine.create_session(SessionCreate(prompt_token_ids=prompt, sampling=SamplingParams(**sampling)))
    return created.session_id


def test_live_rounds_are_committed_by_the_backend_and_reported_live() -> None:
    async def body() -> None:
        backend = LiveBigram()
        engine = VerifierEngine(backend, 60, 8)
        created = await engine.create_session(SessionCreate(prompt_token_ids=[1, 2, 3]))
        assert (created.route, created.route_note) == ("live", None)
        sid = created.session_id
        assert backend.scored == 0  # no prefill job: the live request prefilled the prompt
        r = await engine.verify(sid, next_round(engine, sid, [4, 5, 7, 1]))
        assert r is not None and (r.accepted, r.next_token_id, r.committed_tokens, r.route) == (2, 6, 6, "live")
        assert engine.session(sid).epoch == 1  # a rejection parts the sequence from the drafts, as on rows
        r2 = await engine.verify(sid, next_round(engine, sid, [7, 8]))
        assert r2 is not None and (r2.accepted, r2.next_token_id) == (2, 9)
        assert engine.session(sid).committed == [1, 2, 3, 4, 5, 6, 7, 8, 9]
        assert (engine.stats.rounds, engine.stats.live_rounds, engine.stats.live_sessions_created) == (2, 2, 1)
        assert engine.live_sessions == 1 and backend.scored == 0
        assert engine.end_session(sid) and backend.closed == 1 and engine.live_sessions == 0
    run(body())


def test_a_session_the_live_route_refuses_is_scored_on_rows_and_says_why() -> None:
    async def body() -> None:
        backend = LiveBigram()
        engine = VerifierEngine(backend, 60, 8)
        created = await engine.create_session(SessionCreate(prompt_token_ids=[1, 2, 3],
                                                            sampling=SamplingParams(presence_penalty=0.5)))
        assert (created.route, created.route_note) == ("rows", "logits processing")
        r = await engine.verify(created.session_id, next_round(engine, created.session_id, [4]))
        assert r is not None and r.route == "rows" and backend.opened == 0 and backend.scored > 0
        assert engine.stats.live_rounds == 0
    run(body())


def test_every_way_a_session_ends_closes_its_live_request() -> None:
    async def body() -> None:
        gate = asyncio.Event()  # live rounds run until the test lets them end
        backend = LiveBigram(gate=gate)
        clock = FakeClock()
        engine = VerifierEngine(backend, 60, 64, clock=clock)
        # ended by the edge
        sid = await _session(engine, [1, 2])
        engine.end_session(sid)
        # ended while a round is in flight: closed when the round ends, and the round still committed
        sid = await _session(engine, [1, 2])
        pending = asyncio.ensure_future(engine.verify(sid, next_round(engine, sid, [3])))
        await until(lambda: backend.live_rounds == 1)  # the round is in the backend
        engine.end_session(sid)
        assert backend.closed == 1
        gate.set()
        assert (await pending) is not None and backend.closed == 2
        gate.clear()
        # the edge gone mid-round (its call cancelled), then the session ended
        sid = await _session(engine, [1, 2])
        gone = asyncio.ensure_future(engine.verify(sid, next_round(engine, sid, [3])))
        await until(lambda: backend.live_rounds == 2)
        gone.cancel()
        engine.end_session(sid)
        assert backend.closed == 2  # not while its round runs
        gate.set()
        await until(lambda: backend.closed == 3)  # when it ends
        # idle past the TTL (60 s on the engine's clock)
        await _session(engine, [1, 2])
        clock.now += 60.0
        assert engine.expire_idle() == 0
        clock.now += 0.001
        assert engine.expire_idle() == 1 and backend.closed == 4
        # the verifier shutting down
        await _session(engine, [1, 2])
        await engine.aclose()
        assert backend.closed == 5 and backend.opened == 5 and not backend.open_handles
    run(body())


def test_a_failed_live_round_ends_its_session_and_frees_it() -> None:
    async def body() -> None:
        backend = LiveBigram(fail_round=1)
        engine = VerifierEngine(backend, 60, 8)
        sid = await _session(engine, [1, 2])
        with pytest.raises(EngineError) as err:
            await engine.verify(sid, next_round(engine, sid, [3]))
        assert err.value.status == 500 and backend.closed == 1 and engine.session_count == 0
    run(body())


def test_a_live_session_that_outgrows_the_live_kv_share_goes_on_exactly_on_rows() -> None:
    async def body() -> None:
        backend = LiveBigram(fits=6)
        engine = VerifierEngine(backend, 60, 8)
        sid = await _session(engine, [1, 2, 3])
        r = await engine.verify(sid, next_round(engine, sid, [4, 5]))  # 3 + 2 drafts fit
        assert r is not None and r.route == "live" and r.committed_tokens == 6
        r = await engine.verify(sid, next_round(engine, sid, [7, 8, 9]))  # 6 + 3 do not: demoted
        assert r is not None and r.route == "rows" and (r.accepted, r.next_token_id) == (3, 10)
        session = engine.session(sid)
        assert session.committed == list(range(1, 11)) and session.state.length == 9
        assert session.route_note is not None and backend.closed == 1 and engine.stats.live_demoted == 1
    run(body())


class NativeLiveBigram(LiveBigram, NativeDecoder):
    """Decodes natively, except what its live route makes it refuse (min_p, as vLLM's spec decoding)."""

    def native_refusal(self, sampling: SamplingParams) -> str | None:
        return "min_p" if sampling.min_p > 0 else None

    async def decode(self, req: GenerateRequest) -> AsyncGenerator[tuple[list[int], list[TokenLogprob] | None], None]:
        yield [V - 1] * req.max_tokens, None


def test_a_session_whose_move_to_rows_fails_ends_instead_of_going_on_wrong() -> None:
    async def body() -> None:
        backend = LiveBigram(fits=4)
        backend.fail_on_extend = 1  # the row route's first pass: the demoted session's prefill
        engine = VerifierEngine(backend, 60, 8)
        sid = await _session(engine, [1, 2, 3])
        with pytest.raises(EngineError) as err:
            await engine.verify(sid, next_round(engine, sid, [4, 5]))
        assert err.value.status == 500 and engine.session_count == 0 and backend.closed == 1
        with pytest.raises(EngineError) as gone:
            engine.session(sid)
        assert gone.value.status == 404
    run(body())


def test_cloud_only_decodes_by_rounds_where_the_native_decoder_refuses() -> None:
    async def body() -> None:
        engine = VerifierEngine(NativeLiveBigram(), 60, 8)

        async def tokens(**sampling: float) -> list[int]:
            req = GenerateRequest(prompt_token_ids=[1, 2], max_tokens=3, sampling=SamplingParams(**sampling))
            return [t async for chunk in engine.generate(req) for t in chunk.token_ids]

        assert await tokens() == [V - 1] * 3  # natively
        assert await tokens(min_p=0.05) == [3, 4, 5]  # by rounds (greedy: min_p changes nothing here)
    run(body())
