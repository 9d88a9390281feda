"""VerifierEngine over the harness's bigram backend (a fake for this one module's unit test)."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import BigramBackend, V
from verifier.core.protocol import Proposal, SamplingParams, SessionCreate, VerifyRequest
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
        r = await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[4, 5, 7, 1]))
        assert (r.accepted, r.next_token_id, r.committed_tokens) == (2, 6, 3 + 3)
        assert engine.session(sid).state.length == 5  # rolled back past the rejected tokens
        r2 = await engine.verify(sid, VerifyRequest(round=2, draft_token_ids=[7, 8]))
        assert (r2.accepted, r2.next_token_id) == (2, 9)
        assert engine.session(sid).committed == [1, 2, 3, 4, 5, 6, 7, 8, 9]
        scored_before = backend.scored
        await engine.verify(sid, VerifyRequest(round=3, draft_token_ids=[]))
        assert backend.scored - scored_before == 1  # a round scores only the new tokens
        assert engine.end_session(sid) and backend.released == 1
    run(body())


def test_repeated_round_is_idempotent_and_gaps_refused() -> None:
    async def body() -> None:
        engine = VerifierEngine(BigramBackend(), 60, 8)
        sid = await _session(engine, [1])
        first = await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[2, 3]))
        again = await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[2, 3]))
        assert first == again and engine.session(sid).committed == [1, 2, 3, 4]
        with pytest.raises(EngineError) as err:
            await engine.verify(sid, VerifyRequest(round=5, draft_token_ids=[]))
        assert err.value.status == 409
    run(body())


def test_bad_inputs_are_refused_without_damage() -> None:
    async def body() -> None:
        engine = VerifierEngine(BigramBackend(), 60, 8)
        with pytest.raises(EngineError):
            await _session(engine, [V + 3])
        sid = await _session(engine, [1], temperature=1.0, seed=3)
        with pytest.raises(EngineError):
            await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[99]))
        bad = Proposal(ids=[2, 2], probs=[0.5, 0.5])
        with pytest.raises(EngineError):
            await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[2], proposals=[bad]))
        outside = Proposal(ids=[3], probs=[1.0])
        with pytest.raises(EngineError):
            await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[2], proposals=[outside]))
        assert engine.session(sid).state.length == 0 and engine.session(sid).committed == [1]
        ok = await engine.verify(sid, VerifyRequest(round=1, draft_token_ids=[2], proposals=[
            Proposal(ids=[2], probs=[1.0])]))
        assert ok.round == 1
        with pytest.raises(EngineError) as err:
            await engine.verify("nope", VerifyRequest(round=1))
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
        engine = VerifierEngine(backend, 0.0, 8)
        await _session(engine, [1, 2])
        await asyncio.sleep(0.01)
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
