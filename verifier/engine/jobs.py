"""The engine's jobs on its one ``BatchScheduler``, and the release of what they run on.

A round (or a prefill chunk) of a held sequence is a job; the scheduler batches jobs of many
sequences into one backend pass under their deadlines. A sequence is released (its backend state
freed, a live session's request in the backend's engine closed) only once no job of it is in
flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from verifier.backends.base import LiveHandle, LiveRoute, TargetBackend
from verifier.engine.state import EngineError, HeldSequence, SchedulingConfig, Session
from verifier.scheduling.scheduler import BatchScheduler, Job, Logits, Overloaded

log = logging.getLogger("verifier.engine")  # one logger for every part of the engine


@dataclass(frozen=True)
class JobResult:
    logits: Logits
    compute_s: float  # the batch's model time
    queue_s: float  # time the job waited for its batch


class Jobs:
    """Queues the jobs of held sequences; releases a sequence once it has ended and is idle."""

    def __init__(self, backend: TargetBackend, scheduler: BatchScheduler, config: SchedulingConfig,
                 clock: Callable[[], float]) -> None:
        self._backend = backend
        self._scheduler = scheduler
        self._config = config
        self._clock = clock
        self.closing: set[asyncio.Future[None]] = set()  # live sessions being ended in the backend

    def submit(self, held: HeldSequence, tokens: list[int], logits_rows: int, deadline_s: float, value: float,
               admit_always: bool = False) -> asyncio.Future[JobResult]:
        """Queue one job of a sequence; the future resolves with its logits rows and timings. The
        sequence is marked in flight until the job finishes (released then if it was ended meanwhile)."""
        self._scheduler.start()
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()

        def done(job: Job, logits: Logits | None, exc: BaseException | None) -> None:
            held.in_flight = False
            if held.closing:
                self.release(held)
            if future.done():
                return
            if exc is not None or logits is None:
                future.set_exception(exc or RuntimeError("no logits"))
            else:
                future.set_result(JobResult(logits, job.compute_s, job.queue_s))

        job = Job(held.state, tokens, logits_rows, self._clock() + deadline_s, value, done, held.whole_rows)
        try:
            self._scheduler.submit(job, admit_always)
        except Overloaded as exc:
            raise EngineError(503, str(exc), "overloaded", exc.retry_after_s) from exc
        held.in_flight = True
        return future

    async def prefill(self, held: HeldSequence, prefix: list[int],
                      on_chunk: Callable[[int, JobResult], None] | None = None) -> None:
        """Prefill the prompt in chunks, each its own job, so a long prompt never holds a pass
        long enough to stall other sessions' rounds. Only the first chunk may be refused.
        ``on_chunk(start, result)``: every chunk asks for the logits of all its rows and hands
        them over as it finishes (prompt scoring; one chunk's rows in memory at a time)."""
        chunk = self._config.prefill_chunk
        deadline_at = self._clock() + held.slo.ttft_ms / 1000
        for start in range(0, len(prefix), chunk):
            tokens = prefix[start:start + chunk]
            future = self.submit(held, tokens, len(tokens) if on_chunk is not None else 0,
                                 max(0.0, deadline_at - self._clock()), value=1.0, admit_always=start > 0)
            try:
                result = await asyncio.shield(future)
            except Exception as exc:  # the backend failed (cancellation is no Exception: it propagates)
                raise EngineError(500, f"prefill failed: {type(exc).__name__}: {exc}", "internal_error") from exc
            if on_chunk is not None:
                on_chunk(start, result)

    def release_when_idle(self, held: HeldSequence) -> None:
        """Release a sequence now, or when its job in flight finishes."""
        if held.in_flight:
            held.closing = True
        else:
            self.release(held)

    def release(self, held: HeldSequence) -> None:
        if not held.released:
            held.released = True
            self._backend.release(held.state)
            if isinstance(held, Session) and held.live is not None:
                self.close_live(held.live)

    def close_live(self, handle: LiveHandle) -> None:
        """End a live session in the backend (after its round in flight); failures are logged."""
        if not isinstance(self._backend, LiveRoute):
            return
        closing = self._backend.close_live(handle)
        self.closing.add(closing)

        def closed(done: asyncio.Future[None]) -> None:
            self.closing.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.error("closing a live session failed", exc_info=done.exception())

        closing.add_done_callback(closed)

    async def closed(self) -> None:
        """Wait until the backend has closed every live request being ended now."""
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)
