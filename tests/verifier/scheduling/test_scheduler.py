"""The engine's scheduler with the harness's bigram backend: batching across sessions, session
release only after in-flight work, chunked prefill that cannot stall other rounds, overload.
Nothing here is ordered by sleeping: passes wait on a gate the test opens, the test waits for
the scheduler's own counts, and times come from a clock the test holds."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import numpy.typing as npt
import pytest

from tests.harness import BigramBackend, FakeClock, greedy_continuation, next_round, until
from verifier.backends.base import ScoreBatch, SequenceState, Work
from verifier.core.protocol import SamplingParams, SessionCreate
from verifier.engine import EngineError, SchedulingConfig, VerifierEngine


class GatedBackend(BigramBackend):
    """Every pass waits for ``gate`` (set by the test); ``entered`` is set when a pass begins."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[int]] = []  # the new-token counts of each pass, in order

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([len(batch.tokens_of(i)) for i in range(len(batch))])
        return super().score(batch)


async def session(engine: VerifierEngine, prompt: list[int]) -> str:
    return (await engine.create_session(SessionCreate(prompt_token_ids=prompt, sampling=SamplingParams()))).session_id


def test_rounds_of_many_sessions_share_one_pass() -> None:
    async def body() -> None:
        backend = GatedBackend()
        engine = VerifierEngine(backend, 60, 16)
        sids = [await session(engine, [i + 1, i + 2]) for i in range(6)]
        submitted = engine.scheduler.stats.jobs  # the six prefills
        backend.gate.clear()
        rounds = [asyncio.create_task(engine.verify(sid, next_round(engine, sid, [i + 3, i + 4])))
                  for i, sid in enumerate(sids)]
        await until(lambda: engine.scheduler.stats.jobs == submitted + 6)  # all six submitted, the gate closed
        backend.gate.set()
        results = await asyncio.gather(*rounds)
        assert [r.accepted for r in results] == [2] * 6
        assert [r.next_token_id for r in results] == [greedy_continuation(i + 2, 3)[-1] for i in range(6)]
        assert max(len(b) for b in backend.batches) >= 5  # one pass served (nearly) all of them
        assert engine.scheduler.stats.batches < 6 + 6  # fewer passes than jobs (6 prefills + 6 rounds)
        await engine.aclose()

    asyncio.run(body())


def test_a_session_ended_mid_round_is_released_only_after_its_pass() -> None:
    async def body() -> None:
        backend = GatedBackend()
        engine = VerifierEngine(backend, 60, 4)
        sid = await session(engine, [1, 2, 3])
        backend.gate.clear()
        backend.entered.clear()
        task = asyncio.create_task(engine.verify(sid, next_round(engine, sid, [4, 5])))
        await asyncio.to_thread(backend.entered.wait, 5)  # the round is inside the backend now
        assert engine.end_session(sid)  # the edge hung up
        assert backend.released == 0  # its state is still being scored
        backend.gate.set()
        result = await task
        assert result.accepted == 2 and backend.released == 1 and engine.session_count == 0
        await engine.aclose()

    asyncio.run(body())


def test_a_long_prefill_is_chunked_and_does_not_stall_other_rounds() -> None:
    async def body() -> None:
        backend = GatedBackend(max_context=2048)
        engine = VerifierEngine(backend, 60, 4, SchedulingConfig(prefill_chunk=64, max_batch_tokens=80))
        short = await session(engine, [1, 2])
        long_prompt = [int(t) for t in np.arange(600) % 15 + 1]  # 599 tokens to prefill: 9 chunks of 64, then 23
        backend.gate.clear()
        backend.entered.clear()
        creating = asyncio.create_task(session(engine, long_prompt))
        await asyncio.to_thread(backend.entered.wait, 10)  # the prompt's first chunk is in a pass
        verifying = asyncio.create_task(engine.verify(short, next_round(engine, short, [3])))
        await until(lambda: engine.scheduler.queue_depth == 1)  # the round (2 new tokens) waits behind it
        backend.gate.set()
        result = await verifying
        assert result.accepted == 1
        assert not creating.done()  # the round was answered while the long prompt was still prefilling
        long_sid = await creating
        assert engine.session(long_sid).state.length == 599
        assert [b for b in backend.batches if 64 in b] == [[64]] * 9 and all(sum(b) <= 80 for b in backend.batches)
        scored_at = [i for i, b in enumerate(backend.batches) if 2 in b]
        last_chunk_at = [i for i, b in enumerate(backend.batches) if 23 in b]
        assert len(scored_at) == len(last_chunk_at) == 1 and scored_at[0] < last_chunk_at[0]  # not stalled behind
        await engine.aclose()

    asyncio.run(body())


def test_overload_is_refused_with_a_retry_hint_never_queued_forever() -> None:
    """One round a pass, 100 ms a pass as measured, a 250 ms bound, time standing still: the
    rounds that would wait 0, 100 and 200 ms are queued, those that would wait 300 ms or more refused."""

    async def body() -> None:
        backend = GatedBackend()
        config = SchedulingConfig(max_batch_rounds=1, max_queue_delay_s=0.25)
        engine = VerifierEngine(backend, 60, 16, config, clock=FakeClock(100.0))
        engine.scheduler.estimator.coef = np.array([0.1, 0.0, 0.0, 0.0, 0.0])  # 100 ms a pass, as measured
        sids = [await session(engine, [1]) for _ in range(6)]  # 1-token prompts: no prefill pass
        backend.gate.clear()
        tasks = [asyncio.create_task(engine.verify(sid, next_round(engine, sid))) for sid in sids]
        stats = engine.scheduler.stats
        await until(lambda: stats.jobs + stats.refused == 6)  # every round queued or refused, the gate closed
        backend.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert [isinstance(o, EngineError) for o in outcomes] == [False] * 3 + [True] * 3
        refused = [o for o in outcomes if isinstance(o, EngineError)]
        assert all((e.status, e.code, e.retry_after_s) == (503, "overloaded", 1.0) for e in refused)
        assert stats.refused == 3 and stats.batches == 3
        await engine.aclose()

    asyncio.run(body())


def test_a_backend_failure_fails_the_round_and_keeps_the_session_usable() -> None:
    async def body() -> None:
        backend = BigramBackend(fail_on_extend=1)  # the first round's pass fails (1-token prompt: no prefill)
        engine = VerifierEngine(backend, 60, 4)
        sid = await session(engine, [1])
        with pytest.raises(EngineError) as err:
            await engine.verify(sid, next_round(engine, sid, [2]))
        assert err.value.status == 500
        ok = await engine.verify(sid, next_round(engine, sid, [2]))
        assert (ok.accepted, ok.next_token_id) == (1, 3)
        await engine.aclose()

    asyncio.run(body())


def test_the_loop_outlives_a_batch_that_cannot_even_be_built() -> None:
    """A job whose batch cannot be formed fails alone; the scheduler keeps serving."""

    async def body() -> None:
        engine = VerifierEngine(BigramBackend(), 60, 4)
        sid = await session(engine, [1])
        broken = engine.session(sid).state
        failures: list[BaseException | None] = []
        engine.scheduler.start()
        from verifier.scheduling.scheduler import Job

        job = Job(broken, [], 0, engine.scheduler.clock() + 1, 1.0, lambda j, logits, exc: failures.append(exc))
        engine.scheduler.submit(job)  # no tokens: ScoreBatch refuses it
        await until(lambda: len(failures) > 0)
        assert len(failures) == 1 and isinstance(failures[0], ValueError)
        ok = await engine.verify(sid, next_round(engine, sid, [2]))
        assert ok.accepted == 1
        await engine.aclose()

    asyncio.run(body())


class BlockCache(BigramBackend):
    """A backend whose cache keeps whole blocks of 8 tokens (as vLLM's does): a round recomputes
    the context's last partial block."""

    def work_of(self, context_tokens: int, new_tokens: int, whole_rows: int = 0) -> Work:
        tail = context_tokens % 8
        return Work(new_tokens + tail, context_tokens - tail)


def test_the_estimator_is_fed_the_work_the_backend_says_a_round_costs() -> None:
    async def body() -> None:
        engine = VerifierEngine(BlockCache(), 60, 16)
        sid = await session(engine, list(range(1, 12)))  # 11 tokens: 10 prefilled, the last one pending
        seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        observe = engine.scheduler.estimator.observe
        engine.scheduler.estimator.observe = lambda shape, s: (seen.append((shape.new_tokens,  # type: ignore[method-assign]
                                                                            shape.context_tokens)), observe(shape, s))
        await engine.verify(sid, next_round(engine, sid, [12, 13]))
        # the round scores the pending token and 2 drafts after 10 cached ones: 2 of them in a partial block
        assert seen[-1] == ((3 + 2,), (8,))
        await engine.aclose()

    asyncio.run(body())


class LinearTimeBackend(BigramBackend):
    """A pass takes 3 ms, plus 2 ms an item and 1 ms a new token, on the engine's clock (it moves
    the clock on by that much): a known cost model, timed exactly."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.created = 0

    def new_state(self) -> SequenceState:
        self.created += 1
        return super().new_state()

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        self.clock.now += 0.003 + 0.002 * len(batch) + 0.001 * int(batch.offsets[-1])
        return super().score(batch)


def test_calibration_fits_the_estimator_to_the_backend_before_serving() -> None:
    from verifier.scheduling.estimator import BatchShape

    async def body() -> None:
        clock = FakeClock()
        backend = LinearTimeBackend(clock)
        engine = VerifierEngine(backend, 60, 4, SchedulingConfig(calibration_passes=12, prefill_chunk=64), clock=clock)
        shape = BatchShape.of([(5, 100)] * 3)  # 3 rounds of 5 new tokens: 3 + 6 + 15 = 24 ms
        prior = engine.scheduler.estimator.predict(shape)
        assert abs(prior - 0.024) / 0.024 > 0.5  # the CPU prior is far off for this backend
        assert engine.calibrate() == 12
        estimator = engine.scheduler.estimator
        assert estimator.observed == 12 and estimator.median_relative_error() is None  # fit kept, errors not
        # the passes' exact times give the backend's exact coefficients (the attended pairs cost nothing)
        np.testing.assert_allclose(estimator.coef[:4], [0.003, 0.002, 0.001, 0.0], rtol=0, atol=1e-7)
        assert estimator.predict(shape) == pytest.approx(0.024, rel=1e-5)
        assert backend.released == backend.created > 0 and engine.session_count == 0  # no state left behind
        sid = await session(engine, [1, 2, 3])  # and it serves as before
        result = await engine.verify(sid, next_round(engine, sid, [4, 5]))
        assert result.accepted == 2
        await engine.aclose()

    asyncio.run(body())
