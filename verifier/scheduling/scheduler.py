"""The verifier's scheduler: one queue of work from every session, one batched pass at a time.

Each ``Job`` is the new tokens of one session: a verify round, or a chunk of a prompt being
prefilled. The loop asks the policy for the next batch, runs the backend's ``score`` on it in
a worker thread, feeds the measured time to the estimator and hands each job its logits
through its ``done`` callback, which runs on the event loop whether or not anyone still awaits
the job (a round is committed even if its edge hung up; a retried round is then answered from
the session). Jobs of one session never overlap: the engine submits a session's next job only
after its previous one finished.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from verifier.backends.base import ScoreBatch, SequenceState, TargetBackend, Work
from verifier.scheduling.estimator import BatchShape, VerifyTimeEstimator
from verifier.scheduling.policy import Budget, Candidate, plan_batch, queue_delay

log = logging.getLogger(__name__)

Logits = npt.NDArray[np.float32]


class Overloaded(Exception):
    """The queue is too long for this job to start within the bound; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    state: SequenceState
    token_ids: list[int]
    logits_rows: int
    deadline: float  # on the scheduler's clock (``BatchScheduler.clock``)
    value: float  # expected committed tokens
    done: Callable[[Job, Logits | None, BaseException | None], None]
    whole_rows: bool = True  # its rows must be whole distributions (``ScoreBatch.whole_rows``)
    arrival: float = field(default_factory=time.monotonic)  # set on submit, on the scheduler's clock
    key: int = 0
    queue_s: float = 0.0  # set when its batch starts
    compute_s: float = 0.0  # set when its batch ends: the whole batch's model time
    #: what the backend says it costs (``work_of``); set when submitted (None: the new tokens over the whole state)
    work: Work | None = None

    def shape(self) -> Work:
        return self.work if self.work is not None else Work(len(self.token_ids), self.state.length)

    def candidate(self) -> Candidate:
        work = self.shape()
        return Candidate(self.key, self.arrival, self.deadline, work.computed, work.cached, self.value,
                         work.separate_rows)


@dataclass(frozen=True)
class BatchRecord:
    """One finished pass, for whoever observes the scheduler (the metrics)."""

    items: int
    rows: int  # new tokens scored
    predicted_s: float  # the estimator's prediction, made before the pass
    measured_s: float
    queue_waits: tuple[float, ...]  # each job's wait for this pass
    deadline_misses: int


@dataclass
class SchedulerStats:
    batches: int = 0
    batch_rows: int = 0  # new tokens scored, summed over batches
    round_rows: int = 0  # of which verify rounds (the rest: prompt prefill)
    batch_items: int = 0
    refused: int = 0
    deadline_misses: int = 0
    jobs: int = 0
    queue_wait_s: float = 0.0
    compute_s: float = 0.0


class BatchScheduler:
    """``clock``: seconds, for deadlines, queue waits and pass times (a test passes a fake one,
    which its backend moves on, to feed the estimator exact pass times)."""

    def __init__(self, backend: TargetBackend, estimator: VerifyTimeEstimator, budget: Budget,
                 max_queue_delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._backend = backend
        self.clock = clock
        self.estimator = estimator
        self._budget = budget
        self._max_queue_delay_s = max_queue_delay_s
        self._queue: dict[int, Job] = {}
        self._keys = itertools.count(1)
        self._wake = asyncio.Event()
        self._busy_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self.stats = SchedulerStats()
        self.on_batch: Callable[[BatchRecord], None] | None = None  # told of every finished pass

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batch-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for job in self._queue.values():
            job.done(job, None, RuntimeError("the verifier is shutting down"))
        self._queue.clear()

    def calibrate(self, shapes: Sequence[tuple[int, int, int]], prefill_chunk: int, seed: int = 0) -> int:
        """Time synthetic rounds before serving, so the estimator starts from this backend's costs
        instead of its prior: for each (items, context, new) shape, ``items`` fresh sessions get
        ``context`` random tokens (prefilled in chunks, untimed), then one timed pass scores
        ``new`` more for each, with every row wanted, as a verify round does (after one untimed
        warm-up pass). Synchronous, before ``start``. The estimator keeps the fit and forgets
        these errors. Returns the passes timed."""
        rng = np.random.default_rng(seed)
        vocab = self._backend.info.vocab_size
        warm = self._backend.new_state()  # a first pass untimed: one-off start-up costs are not the backend's
        try:
            self._backend.score(ScoreBatch.of([(warm, rng.integers(0, vocab, 8).tolist(), 1)], [False]))
        finally:
            self._backend.release(warm)
        for items, context, new in shapes:
            states = [self._backend.new_state() for _ in range(items)]
            try:
                for start in range(0, context, prefill_chunk):
                    n = min(prefill_chunk, context - start)
                    self._backend.score(ScoreBatch.of([(s, rng.integers(0, vocab, n).tolist(), 0) for s in states]))
                shape = BatchShape.of([self._backend.work_of(s.length, new) for s in states])
                batch = ScoreBatch.of([(s, rng.integers(0, vocab, new).tolist(), new) for s in states],
                                      [False] * items)  # rows as a plain greedy round asks for them
                t0 = self.clock()
                self._backend.score(batch)
                self.estimator.observe(shape, self.clock() - t0)
            finally:
                for state in states:
                    self._backend.release(state)
        self.estimator.forget_errors()
        return len(shapes)

    def submit(self, job: Job, admit_always: bool = False) -> None:
        """Queue a job; raises Overloaded (before queueing) when it could not start within the
        bound. ``admit_always`` skips that check (the later chunks of a prefill already admitted)."""
        now = self.clock()
        job.key = next(self._keys)
        job.arrival = now
        job.work = self._backend.work_of(job.state.length, len(job.token_ids),
                                         job.logits_rows if job.whole_rows else 0)
        if not admit_always:
            delay = queue_delay([j.candidate() for j in self._queue.values()], job.candidate(), now,
                                self.estimator.predict, self._budget, self._busy_until)
            if delay > self._max_queue_delay_s:
                self.stats.refused += 1
                raise Overloaded(f"the verifier is overloaded: a round would wait {delay:.1f} s "
                                 f"(bound {self._max_queue_delay_s:.1f} s)", retry_after_s=max(1.0, delay))
        self._queue[job.key] = job
        self.stats.jobs += 1
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self.clock()
            plan = plan_batch([j.candidate() for j in self._queue.values()], now, self.estimator.predict,
                              self._budget)
            jobs = [self._queue.pop(k) for k in plan.keys]
            try:
                await self._execute(jobs, plan.predicted_s)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one batch
                log.exception("batch could not run", extra={"items": len(jobs)})
                for job in jobs:
                    job.done(job, None, exc)

    async def _execute(self, jobs: list[Job], predicted_s: float) -> None:
        shape = BatchShape.of([j.shape() for j in jobs])
        batch = ScoreBatch.of([(j.state, j.token_ids, j.logits_rows) for j in jobs], [j.whole_rows for j in jobs])
        start = self.clock()
        self._busy_until = start + predicted_s
        try:
            rows = await asyncio.to_thread(self._backend.score, batch)
        except Exception as exc:  # noqa: BLE001 - every job of the batch learns of the failure
            log.exception("batch failed", extra={"items": len(jobs)})
            for job in jobs:
                job.done(job, None, exc)
            return
        finally:
            self._busy_until = 0.0
        end = self.clock()
        self.estimator.observe(shape, end - start)
        self.stats.batches += 1
        self.stats.batch_items += len(jobs)
        self.stats.batch_rows += sum(shape.new_tokens)
        self.stats.round_rows += sum(len(j.token_ids) for j in jobs if j.logits_rows > 0)
        self.stats.compute_s += end - start
        misses = 0
        for job in jobs:
            job.queue_s = start - job.arrival
            job.compute_s = end - start
            self.stats.queue_wait_s += job.queue_s
            misses += int(end > job.deadline)
        self.stats.deadline_misses += misses
        if self.on_batch is not None:
            self.on_batch(BatchRecord(len(jobs), sum(shape.new_tokens), predicted_s, end - start,
                                      tuple(j.queue_s for j in jobs), misses))
        for job, logits in zip(jobs, rows, strict=True):
            try:
                job.done(job, logits, None)
            except Exception:  # noqa: BLE001 - one job's bookkeeping must not stop the loop
                log.exception("job completion failed")
