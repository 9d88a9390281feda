"""VerifierEngine over the harness's bigram backend (a fake for this one module's unit test)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.harness import BigramBackend, FakeClock, V, next_round
from verifier.core.protocol import SamplingParams, SessionCreate
from verifier.core.sampling import SparseDist
from verifier.core.wire import Round
from verifier.engine import EngineError, VerifierEngine


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _session(engine: VerifierEngine, prompt: list[int], **sampling: float) -> str:
    created = await engine.create_session(SessionCreate(prompt_token_ids=prompt, sampling=SamplingParams(**sampling)))
    return created.session_id


def test_greedy_rounds_commit_and_roll_back() -> None:
    async def body() -> None:
        backend = BigramBackend()
        engine = VerifierEngine(backend, 60, 8)
        sid = await _session(engine, [1, 2, 3])
        # KV holds the prompt minus its pending last token
        assert engine.session(sid).state.length == 2
        r = await engine.verify(sid, next_round(engine, sid, [4, 5, 7, 1]))
        assert r is not None and (r.accepted, r.next_token_id, r.committed_tokens) == (2, 6, 3 + 3)
        assert engine.session(sid).state.length == 5  # rolled back past the rejected tokens
        assert engine.session(sid).epoch == 1  # the rejection parted the verified tokens from the drafts
        r2 = await engine.verify(sid, next_round(engine, sid, [7, 8]))
        assert r2 is not None and (r2.accepted, r2.next_token_id) == (2, 9)
        assert engine.session(sid).committed == [1, 2, 3, 4, 5, 6, 7, 8, 9] and engine.session(sid).epoch == 1
        scored_before = backend.scored
        await engine.verify(sid, next_round(engine, sid, []))
        assert backend.scored - scored_before == 1  # a round scores only the new tokens
        assert engine.end_session(sid) and backend.released == 1
    run(body())


def test_pipelined_rounds_overlap_on_the_bonus_token_or_come_back_stale() -> None:
    async def body() -> None:
        backend = BigramBackend()
        engine = VerifierEngine(backend, 60, 8)
        sid = await _session(engine, [1])

        def rnd(epoch: int, start: int, drafts: list[int]) -> Round:
            return Round(sid=0, seq=1, epoch=epoch, start=start, draft_token_ids=drafts)

        # round A drafts positions 1-2, round B (sent before A's answer) drafts 3-4 on top of it
        a = await engine.verify(sid, rnd(0, 1, [2, 3]))
        assert a is not None and (a.accepted, a.next_token_id, a.committed_tokens) == (2, 4, 4)
        b = await engine.verify(sid, rnd(0, 3, [4, 5]))  # B's first draft is A's bonus token: kept
        assert b is not None and (b.accepted, b.next_token_id, b.committed_tokens) == (2, 6, 6)
        scored = backend.scored
        c = await engine.verify(sid, rnd(0, 5, [9, 7]))  # drafted on 9 where the bonus was 6: stale
        assert c is None and engine.session(sid).epoch == 1 and backend.scored == scored
        assert await engine.verify(sid, rnd(0, 7, [8])) is None  # anything else of epoch 0: stale too
        d = await engine.verify(sid, rnd(1, 6, [7, 1]))  # the edge's next round, in the new epoch
        assert d is not None and (d.accepted, d.next_token_id) == (1, 8) and engine.session(sid).epoch == 2
        assert engine.stats.stale_rounds == 2
        for bad in (rnd(3, 8, [9]), rnd(2, 5, [9]), rnd(2, 10, [9]), rnd(2, 7, [])):  # future epoch, gaps
            with pytest.raises(EngineError) as err:
                await engine.verify(sid, bad)
            assert err.value.code == "invalid_round"
        assert engine.session(sid).committed == [1, 2, 3, 4, 5, 6, 7, 8]
    run(body())


def test_bad_inputs_are_refused_without_damage() -> None:
    async def body() -> None:
        engine = VerifierEngine(BigramBackend(), 60, 8)
        with pytest.raises(EngineError):
            await _session(engine, [V + 3])
        sid = await _session(engine, [1], temperature=1.0, seed=3)
        with pytest.raises(EngineError):
            await engine.verify(sid, next_round(engine, sid, [99]))
        bad = SparseDist(np.array([2, 2]), np.array([0.5, 0.5]))
        with pytest.raises(EngineError):
            await engine.verify(sid, next_round(engine, sid, [2], [bad]))
        outside = SparseDist(np.array([3]), np.array([1.0]))
        with pytest.raises(EngineError):
            await engine.verify(sid, next_round(engine, sid, [2], [outside]))
        with pytest.raises(EngineError):
            await engine.verify(sid, next_round(engine, sid, [2] * 65))
        assert engine.session(sid).state.length == 0 and engine.session(sid).committed == [1]
        ok = await engine.verify(sid, next_round(engine, sid, [2], [SparseDist(np.array([2]), np.array([1.0]))]))
        assert ok is not None and ok.committed_tokens == 3
        with pytest.raises(EngineError) as err:
            await engine.verify("nope", next_round(engine, sid))
        assert err.value.status == 404
    run(body())


def test_context_limit_and_session_limit() -> None:
    async def body() -> None:
        engine = VerifierEngine(BigramBackend(max_context=64), 60, 1)
        with pytest.raises(EngineError) as err:
            await _session(engine, list(range(1, 8)) * 10)
        assert err.value.code == "context_length_exceeded"
        await _session(engine, [1])
        with pytest.raises(EngineError) as err:
            await _session(engine, [1])
        assert err.value.status == 503
    run(body())


def test_idle_sessions_expire() -> None:
    async def body() -> None:
        backend = BigramBackend()
        clock = FakeClock()
        engine = VerifierEngine(backend, 30.0, 8, clock=clock)
        await _session(engine, [1, 2])
        clock.now += 30.0
        assert engine.expire_idle() == 0  # idle for the TTL, not past it
        clock.now += 0.001
        assert engine.expire_idle() == 1 and engine.session_count == 0 and backend.released == 1
    run(body())


def test_generate_streams_until_stop_token_and_frees_the_session() -> None:
    from verifier.core.protocol import GenerateRequest

    async def body() -> None:
        backend = BigramBackend()
        engine = VerifierEngine(backend, 60, 8)
        req = GenerateRequest(prompt_token_ids=[4], max_tokens=10, stop_token_ids=[7])
        out = [c.token_ids[0] async for c in engine.generate(req)]
        assert out == [5, 6, 7] and engine.session_count == 0 and backend.released == 1
        capped = [c.token_ids[0] async for c in engine.generate(GenerateRequest(prompt_token_ids=[1], max_tokens=2))]
        assert capped == [2, 3]
    run(body())


def test_repetition_penalty_refused_by_a_backend_of_log_probabilities() -> None:
    async def body() -> None:
        logprob_rows = BigramBackend()
        logprob_rows.info = logprob_rows.info.model_copy(update={"rows_are_logits": False})
        engine = VerifierEngine(logprob_rows, 60, 8)
        with pytest.raises(EngineError) as err:
            await _session(engine, [1, 2, 3], repetition_penalty=1.2)
        assert (err.value.status, err.value.code) == (400, "unsupported_sampling")
        assert "repetition_penalty" in str(err.value) and engine.session_count == 0
        await _session(engine, [1, 2, 3], temperature=0.7, frequency_penalty=0.5)  # shift-invariant: fine
    run(body())


def test_sampled_sessions_refused_by_a_greedy_only_backend() -> None:
    async def body() -> None:
        greedy_only = BigramBackend()
        greedy_only.info = greedy_only.info.model_copy(update={"verifies_sampled": False})
        engine = VerifierEngine(greedy_only, 60, 8)
        with pytest.raises(EngineError) as err:
            await _session(engine, [1, 2, 3], temperature=0.7)
        assert (err.value.status, err.value.code) == (400, "unsupported_sampling")
        assert engine.session_count == 0
        await _session(engine, [1, 2, 3])  # greedy is fine
    run(body())
