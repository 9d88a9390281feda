"""The verifier engine: sessions holding a verified prefix and its KV state, and their rounds.

Invariant per session: ``committed`` is prompt + verified output; its last token is the
*pending* token, verified but not yet in the KV state (the next round feeds it first, so its
logits score draft token 1). KV length == len(committed) - 1 between rounds.

Work of every session goes through one ``BatchScheduler``: a round (or a prefill chunk) is a
job; the scheduler batches jobs of many sessions into one backend pass under their deadlines.
A round's outcome (acceptance, commit, KV roll-back) is applied when its batch finishes,
whether or not its caller still waits, so a retried round is answered from the session. A
session is released only once no job of it is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from verifier.backends.base import LiveHandle, LiveRoute, NativeDecoder, SequenceState, TargetBackend
from verifier.core.acceptance import RoundOutcome, verify_greedy, verify_sampled
from verifier.core.bounds import expected_tokens_per_round
from verifier.core.codec import decode_proposals
from verifier.core.grammar import Constraint, GrammarCompiler, GrammarError
from verifier.core.logits import LogitsProcessing
from verifier.core.logprobs import TokenLogprob, token_logprobs
from verifier.core.protocol import (
    GeneratedTokens,
    GenerateRequest,
    GrammarParams,
    PromptLogprobs,
    PromptLogprobsRequest,
    SamplingParams,
    SessionCreate,
    SessionCreated,
    SloTargets,
    TokenLogprobs,
    whole_rows_reasons,
)
from verifier.core.sampling import SparseDist, target_distribution
from verifier.core.wire import MAX_ROUND_DRAFTS, PROTOCOL_VERSION, Round, parts_from_sent
from verifier.scheduling.estimator import VerifyTimeEstimator, calibration_shapes
from verifier.scheduling.policy import Budget
from verifier.scheduling.scheduler import BatchScheduler, Job, Logits, Overloaded

log = logging.getLogger(__name__)


class EngineError(Exception):
    """A request the engine refuses; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str, code: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SchedulingConfig:
    """How the engine batches: budgets of one pass, the queue bound, prefill chunks, default SLO."""

    max_batch_tokens: int = 256
    max_batch_rounds: int = 32
    max_queue_delay_s: float = 10.0
    prefill_chunk: int = 256
    tpot_ms: float = 250.0
    ttft_ms: float = 5000.0
    calibration_passes: int = 0  # synthetic rounds timed before serving (VerifierEngine.calibrate)


@dataclass(frozen=True)
class LatencyTargets:
    """A session's latency targets, the request's where it set them, else the engine's defaults."""

    tpot_ms: float
    ttft_ms: float

    @classmethod
    def of(cls, requested: SloTargets | None, config: SchedulingConfig) -> LatencyTargets:
        return cls(tpot_ms=requested.tpot_ms if requested and requested.tpot_ms else config.tpot_ms,
                   ttft_ms=requested.ttft_ms if requested and requested.ttft_ms else config.ttft_ms)


@dataclass
class Session:
    session_id: str
    sampling: SamplingParams
    slo: LatencyTargets
    state: SequenceState
    committed: list[int]
    prompt_tokens: int
    output_start: int  # where the output begins in committed (the penalties count from there)
    processing: LogitsProcessing  # sampling's logits processing, built once for every round
    logprobs: int | None  # top alternatives of the target's logprobs reported per verified token (None: none)
    constraint: Constraint | None  # the grammar the output must match
    last_used: float
    whole_rows: bool = True  # its rounds need whole distributions (not plain greedy: ``whole_rows_reasons``)
    epoch: int = 0  # advanced when the verified sequence parts from what the edge sent (verifier.core.wire)
    accepted: int = 0  # draft tokens accepted over the session (for the value of its next round)
    rejections: int = 0
    in_flight: bool = False  # a job of this session is queued or being scored
    closing: bool = False  # ended while in flight: release when the job finishes
    released: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    live: LiveHandle | None = None  # held live in the backend's engine (LiveRoute): its rounds go there
    route_note: str | None = None  # why it is not live, where the backend has a live route

    @property
    def route(self) -> str:
        """Which route scores its rounds: ``live`` (inside the backend's own engine) or ``rows``."""
        return "live" if self.live is not None else "rows"

    def expected_tokens(self, drafted: int) -> float:
        """Tokens a round of ``drafted`` draft tokens is expected to commit (Laplace-smoothed
        per-token acceptance of this session so far)."""
        alpha = (self.accepted + 1) / (self.accepted + self.rejections + 2)
        return expected_tokens_per_round(alpha, drafted)


@dataclass
class EngineStats:
    sessions_created: int = 0
    sessions_expired: int = 0
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    native_streams: int = 0  # cloud-only generations decoded by the backend itself
    stale_rounds: int = 0  # rounds answered stale, without computing
    live_sessions_created: int = 0  # sessions opened on the backend's live route
    live_rounds: int = 0  # of ``rounds``: verified inside the backend's live requests (the rest: whole rows)
    live_rows: int = 0  # tokens live rounds sent the backend's engine to score (each round's drafts and its last token)
    live_demoted: int = 0  # live sessions moved to the row route when the live route's KV share ran out


@dataclass(frozen=True)
class RoundResult:
    """A scored round: ``accepted`` draft tokens, then ``next_token_id``; ``committed_tokens`` is
    the verified length now; the pass's model time and the round's wait for it."""

    accepted: int
    next_token_id: int
    committed_tokens: int
    compute_s: float
    queue_s: float
    logprobs: list[TokenLogprob] | None = None  # of the tokens verified by this round, when the session asked
    route: str = "rows"  # ``Session.route`` of the session when this round was scored


@dataclass(frozen=True)
class JobResult:
    logits: Logits
    compute_s: float  # the batch's model time
    queue_s: float  # time the job waited for its batch


class VerifierEngine:
    def __init__(self, backend: TargetBackend, session_ttl_s: float, max_sessions: int,
                 scheduling: SchedulingConfig | None = None, estimator: VerifyTimeEstimator | None = None,
                 grammars: GrammarCompiler | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds, the scheduler's and the sessions' (deadlines, pass times, idle time)."""
        self.backend = backend
        self._clock = clock
        self.grammars = grammars  # None: no tokenizer known, sessions with a grammar are refused
        self._ttl = session_ttl_s
        self._max_sessions = max_sessions
        self._config = scheduling or SchedulingConfig()
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Future[None]] = set()  # live sessions being ended in the backend
        self.scheduler = BatchScheduler(
            backend, estimator or VerifyTimeEstimator(),
            Budget(self._config.max_batch_tokens, self._config.max_batch_rounds), self._config.max_queue_delay_s,
            clock)
        self.stats = EngineStats()
        #: told of every scored round (drafted, accepted) and every prompt prefill (seconds): the metrics
        self.on_round: Callable[[int, int], None] | None = None
        self.on_prefill: Callable[[float], None] | None = None

    def calibrate(self) -> int:
        """Time ``calibration_passes`` synthetic rounds (before serving; blocking), so the batch
        policy's time estimates fit this backend from the first request."""
        shapes = calibration_shapes(self._config.calibration_passes, self.backend.info.max_context,
                                    self._config.max_batch_tokens)
        return self.scheduler.calibrate(shapes, self._config.prefill_chunk)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def live_sessions(self) -> int:
        """Sessions held live in the backend's engine now."""
        return sum(1 for s in self._sessions.values() if s.live is not None)

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    def session(self, session_id: str) -> Session:
        """A live session (404 EngineError if it ended or expired)."""
        session = self._sessions.get(session_id)
        if session is None:
            raise EngineError(404, f"no session {session_id!r} (ended or expired)", "session_not_found")
        return session

    # ---- jobs ----------------------------------------------------------------------------
    def _submit(self, session: Session, tokens: list[int], logits_rows: int, deadline_s: float, value: float,
                admit_always: bool = False) -> asyncio.Future[JobResult]:
        """Queue one job of a session; the future resolves with its logits rows and timings. The
        session is marked in flight until the job finishes (released then if it was ended meanwhile)."""
        self.scheduler.start()
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()

        def done(job: Job, logits: Logits | None, exc: BaseException | None) -> None:
            session.in_flight = False
            if session.closing:
                self._release(session)
            if future.done():
                return
            if exc is not None or logits is None:
                future.set_exception(exc or RuntimeError("no logits"))
            else:
                future.set_result(JobResult(logits, job.compute_s, job.queue_s))

        job = Job(session.state, tokens, logits_rows, self._clock() + deadline_s, value, done, session.whole_rows)
        try:
            self.scheduler.submit(job, admit_always)
        except Overloaded as exc:
            raise EngineError(503, str(exc), "overloaded", exc.retry_after_s) from exc
        session.in_flight = True
        return future

    def _release_when_idle(self, session: Session) -> None:
        """Release a session now, or when its job in flight finishes."""
        if session.in_flight:
            session.closing = True
        else:
            self._release(session)

    def _release(self, session: Session) -> None:
        if not session.released:
            session.released = True
            self.backend.release(session.state)
            if session.live is not None:
                self._close_live(session.live)

    def _close_live(self, handle: LiveHandle) -> None:
        """End a live session in the backend (after its round in flight); failures are logged."""
        if not isinstance(self.backend, LiveRoute):
            return
        closing = self.backend.close_live(handle)
        self._closing.add(closing)

        def closed(done: asyncio.Future[None]) -> None:
            self._closing.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.error("closing a live session failed", exc_info=done.exception())

        closing.add_done_callback(closed)

    # ---- sessions --------------------------------------------------------------------------
    async def create_session(self, req: SessionCreate) -> SessionCreated:
        info = self.backend.info
        self._check_request(req.protocol_version, req.prompt_token_ids, req.sampling)
        if req.sampling.repetition_penalty != 1.0 and not info.rows_are_logits:
            raise EngineError(400, f"the {info.backend} backend's rows are log-probabilities, not logits: "
                              "repetition_penalty (which scales a logit by its sign) cannot be applied to them; "
                              "cloud-only decoding on this backend is the backend's own and applies it",
                              "unsupported_sampling")
        short = whole_rows_reasons(req.sampling, req.logprobs, req.grammar)
        if short and not info.verifies_sampled:
            what, code = short[0]
            raise EngineError(400, f"the {info.backend} backend verifies plain greedy drafts only; {what} needs a "
                              "backend with full distributions (--backend torch); cloud-only decoding on this "
                              "backend is the backend's own", code)
        if len(self._sessions) >= self._max_sessions:
            self.expire_idle()
            if len(self._sessions) >= self._max_sessions:
                raise EngineError(503, "verifier is at its session limit", "overloaded", 1.0)
        slo = LatencyTargets.of(req.slo, self._config)
        constraint = self._constraint(req.grammar)
        sid = secrets.token_hex(12)
        session = Session(session_id=sid, sampling=req.sampling, slo=slo, state=self.backend.new_state(),
                          committed=list(req.prompt_token_ids), prompt_tokens=len(req.prompt_token_ids),
                          output_start=req.output_index(), processing=req.sampling.processing(),
                          logprobs=req.logprobs, constraint=constraint,
                          last_used=self._clock(), whole_rows=bool(short))
        t0 = self._clock()
        try:
            if isinstance(self.backend, LiveRoute):
                session.route_note = self.backend.live_refusal(req.sampling, len(req.prompt_token_ids),
                                                               req.reproducible, req.logprobs, req.grammar is not None)
                if session.route_note is None:
                    session.live = await self._open_live(self.backend, req)
            if session.live is None:
                await self._prefill(session, req.prompt_token_ids[:-1])
        except BaseException:
            self._release_when_idle(session)
            raise
        if self.on_prefill is not None:
            self.on_prefill(self._clock() - t0)
        self._sessions[sid] = session
        self.stats.sessions_created += 1
        self.stats.live_sessions_created += int(session.live is not None)
        log.info("session created", extra={"session": sid, "prompt_tokens": len(req.prompt_token_ids),
                                           "route": session.route, "route_note": session.route_note})
        return SessionCreated(session_id=sid, route=session.route, route_note=session.route_note)

    async def _open_live(self, backend: LiveRoute, req: SessionCreate) -> LiveHandle:
        try:
            return await backend.open_live(list(req.prompt_token_ids), req.sampling)
        except Exception as exc:  # the backend failed (cancellation is no Exception: it propagates)
            raise EngineError(500, f"prefill failed: {type(exc).__name__}: {exc}", "internal_error") from exc

    def _constraint(self, grammar: GrammarParams | None) -> Constraint | None:
        if grammar is None:
            return None
        if self.grammars is None:
            raise EngineError(400, "this verifier has no tokenizer to compile grammars with (its model directory "
                              "holds no tokenizer.json)", "unsupported_grammar")
        try:
            return self.grammars.compile(grammar.spec())
        except GrammarError as exc:
            raise EngineError(400, f"grammar rejected: {exc}", "invalid_grammar") from exc

    def _check_request(self, protocol_version: int, prompt_token_ids: list[int], sampling: SamplingParams) -> None:
        info = self.backend.info
        if protocol_version != PROTOCOL_VERSION:
            raise EngineError(400, f"unsupported protocol_version {protocol_version}", "bad_protocol")
        if any(t < 0 or t >= info.vocab_size for t in prompt_token_ids):
            raise EngineError(400, "prompt token id outside the vocabulary", "invalid_token")
        if any(t < 0 or t >= info.vocab_size for t in sampling.token_ids_named()):
            raise EngineError(400, "logit_bias or stop_token_ids name a token outside the vocabulary",
                              "invalid_token")
        if len(prompt_token_ids) >= info.max_context:
            raise EngineError(400, "prompt fills the target's context", "context_length_exceeded")

    async def _prefill(self, session: Session, prefix: list[int],
                       on_chunk: Callable[[int, JobResult], None] | None = None) -> None:
        """Prefill the prompt in chunks, each its own job, so a long prompt never holds a pass
        long enough to stall other sessions' rounds. Only the first chunk may be refused.
        ``on_chunk(start, result)``: every chunk asks for the logits of all its rows and hands
        them over as it finishes (prompt scoring; one chunk's rows in memory at a time)."""
        chunk = self._config.prefill_chunk
        deadline_at = self._clock() + session.slo.ttft_ms / 1000
        for start in range(0, len(prefix), chunk):
            tokens = prefix[start:start + chunk]
            future = self._submit(session, tokens, len(tokens) if on_chunk is not None else 0,
                                  max(0.0, deadline_at - self._clock()), value=1.0, admit_always=start > 0)
            try:
                result = await asyncio.shield(future)
            except Exception as exc:  # the backend failed (cancellation is no Exception: it propagates)
                raise EngineError(500, f"prefill failed: {type(exc).__name__}: {exc}", "internal_error") from exc
            if on_chunk is not None:
                on_chunk(start, result)

    def _check_round(self, session: Session, r: Round) -> list[SparseDist] | None:
        vocab = self.backend.info.vocab_size
        drafted = len(r.draft_token_ids)
        if drafted > MAX_ROUND_DRAFTS:
            raise EngineError(400, f"a round carries at most {MAX_ROUND_DRAFTS} draft tokens", "invalid_round")
        if any(t < 0 or t >= vocab for t in r.draft_token_ids):
            raise EngineError(400, "draft token id outside the vocabulary", "invalid_token")
        try:
            proposals = decode_proposals(r)
            if proposals is not None:
                if len(proposals) != drafted:
                    raise ValueError("one proposal per draft token is required")
                if session.sampling.temperature == 0:
                    raise ValueError("proposals are meaningless for a greedy session")
                for dist in proposals:
                    dist.validate(vocab)
        except ValueError as exc:
            raise EngineError(400, str(exc), "invalid_proposal") from exc
        if r.start + drafted >= self.backend.info.max_context:
            raise EngineError(400, "round would exceed the target's context", "context_length_exceeded")
        return proposals

    async def verify(self, session_id: str, r: Round) -> RoundResult | None:
        """Score one round of a session (rounds of a session are scored in the order of calls);
        None when it is stale: drafted in an earlier epoch, or on a bonus position the verified
        token does not match (docs/verify-api.md)."""
        session = self.session(session_id)
        async with session.lock:
            if session.released:
                raise EngineError(404, f"session {session_id!r} ended", "session_not_found")
            session.last_used = self._clock()
            if r.epoch < session.epoch:
                self.stats.stale_rounds += 1
                return None
            if r.epoch > session.epoch:
                raise EngineError(400, f"round of epoch {r.epoch}; the session is in epoch {session.epoch}",
                                  "invalid_round")
            proposals = self._check_round(session, r)
            draft = list(r.draft_token_ids)
            overlap = len(session.committed) - r.start
            if overlap not in (0, 1) or (overlap == 1 and not draft):
                raise EngineError(400, f"round starts at position {r.start}; {len(session.committed)} tokens are "
                                  "verified", "invalid_round")
            if overlap == 1:  # drafted on past the previous round's bonus token, unknown to the edge then
                if parts_from_sent(0, 0, session.committed[-1], draft[0]):
                    session.epoch += 1
                    self.stats.stale_rounds += 1
                    return None
                draft, proposals = draft[1:], proposals[1:] if proposals else None
            if session.live is not None and isinstance(self.backend, LiveRoute):
                if self.backend.live_fits(session.live, len(session.committed) + len(draft)):
                    return await self._live_round(self.backend, session, session.live, draft, overlap)
                await self._demote(session, session.live)
            value = session.expected_tokens(len(draft))
            deadline_s = session.slo.tpot_ms / 1000 * value
            future = self._submit(session, [session.committed[-1], *draft], len(draft) + 1, deadline_s, value)
            outcome_future: asyncio.Future[RoundResult] = asyncio.get_running_loop().create_future()

            def finish(done: asyncio.Future[JobResult]) -> None:
                """Apply the round when its batch is done, whoever still waits for it."""
                try:
                    outcome_future.set_result(self._apply_round(session, draft, proposals, overlap, done.result()))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the round
                    if not session.released:
                        self.backend.truncate(session.state, len(session.committed) - 1)
                    if isinstance(exc, EngineError):
                        outcome_future.set_exception(exc)
                    else:
                        outcome_future.set_exception(
                            EngineError(500, f"round failed: {type(exc).__name__}: {exc}", "internal_error"))

            future.add_done_callback(finish)
            return await asyncio.shield(outcome_future)

    async def _live_round(self, backend: LiveRoute, session: Session, live: LiveHandle, draft: list[int],
                          overlap: int) -> RoundResult:
        """A round verified inside the session's live request: the backend's engine decides
        acceptance (exact for any draft) and rolls rejected drafts back. Applied when it ends,
        whoever still waits for it."""
        started = time.perf_counter()
        running = backend.live_round(live, session.committed[-1], draft)
        session.in_flight = True
        outcome_future: asyncio.Future[RoundResult] = asyncio.get_running_loop().create_future()

        def finish(done: asyncio.Future[list[int]]) -> None:
            session.in_flight = False
            try:
                tokens = done.result()
                if not tokens or tokens[:-1] != draft[:len(tokens) - 1]:
                    raise RuntimeError(f"the live route committed {tokens} for drafts {draft}")
                self.stats.live_rows += len(draft) + 1
                outcome_future.set_result(self._commit(session, draft, len(tokens) - 1, tokens[-1], overlap,
                                                       time.perf_counter() - started, 0.0, None))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the round
                session.closing = True  # the live request is in an unknown state: the session ends
                outcome_future.set_exception(
                    EngineError(500, f"live round failed: {type(exc).__name__}: {exc}", "internal_error"))
            if session.closing:
                self._sessions.pop(session.session_id, None)
                self._release(session)

        running.add_done_callback(finish)
        return await asyncio.shield(outcome_future)

    async def _demote(self, session: Session, live: LiveHandle) -> None:
        """Move a live session to the row route (the live route's KV share is spent): its live
        request ends and the row route prefills the verified sequence, from vLLM's prefix cache."""
        session.live, session.route_note = None, "the live route's KV share ran out"
        self._close_live(live)
        self.stats.live_demoted += 1
        try:
            await self._prefill(session, session.committed[:-1])
        except BaseException:  # its row state is not the verified sequence: the session cannot go on
            self.end_session(session.session_id)
            raise

    def _apply_round(self, session: Session, draft: list[int], proposals: list[SparseDist] | None, overlap: int,
                     result: JobResult) -> RoundResult:
        sp = session.sampling
        logits = raw = result.logits
        processing = session.processing
        start = session.output_start
        if processing.active:
            logits = processing.apply_rows(logits, session.committed[:start], session.committed[start:], draft)
        if session.constraint is not None:
            logits = logits.copy() if logits is raw else logits
            session.constraint.apply_rows(logits, session.committed[start:], draft)
        try:
            outcome: RoundOutcome
            if sp.temperature == 0:
                outcome = verify_greedy(draft, logits)
            else:
                probs = target_distribution(logits, sp.temperature, sp.top_p, sp.top_k, sp.min_p)
                outcome = verify_sampled(draft, proposals, probs, sp.seed, len(session.committed))
        except ValueError as exc:
            raise EngineError(400, str(exc), "invalid_proposal") from exc
        verified = [*draft[: outcome.accepted], outcome.next_token_id]
        logprobs = None if session.logprobs is None else token_logprobs(raw[: len(verified)], verified,
                                                                         session.logprobs)
        round_result = self._commit(session, draft, outcome.accepted, outcome.next_token_id, overlap,
                                    result.compute_s, result.queue_s, logprobs)
        if not session.released:
            self.backend.truncate(session.state, len(session.committed) - 1)
        return round_result

    def _commit(self, session: Session, draft: list[int], accepted: int, next_token_id: int, overlap: int,
                compute_s: float, queue_s: float, logprobs: list[TokenLogprob] | None) -> RoundResult:
        """A verified round into the session and the counts: ``accepted`` drafts, then ``next_token_id``."""
        session.committed.extend([*draft[:accepted], next_token_id])
        session.accepted += accepted
        rejected = parts_from_sent(accepted, len(draft), next_token_id, None)
        session.rejections += int(rejected)
        session.epoch += int(rejected)
        self.stats.rounds += 1
        self.stats.live_rounds += int(session.live is not None)
        self.stats.drafted += len(draft) + overlap
        self.stats.accepted += accepted + overlap
        if self.on_round is not None:
            self.on_round(len(draft) + overlap, accepted + overlap)
        return RoundResult(accepted=accepted + overlap, next_token_id=next_token_id,
                           committed_tokens=len(session.committed), compute_s=compute_s, queue_s=queue_s,
                           logprobs=logprobs, route=session.route)

    async def generate(self, req: GenerateRequest) -> AsyncGenerator[GeneratedTokens, None]:
        """Cloud-only decoding: the backend's own decoding where it has one (vLLM), else the
        round code path with no drafts, so its greedy output is by construction the verifier's."""
        self._check_request(req.protocol_version, req.prompt_token_ids, req.sampling)
        if isinstance(self.backend, NativeDecoder) and self.backend.native_refusal(req.sampling) is None:
            async for tokens in self._decode_natively(self.backend, req):
                yield tokens
            return
        created = await self.create_session(SessionCreate(prompt_token_ids=req.prompt_token_ids,
                                                          sampling=req.sampling, slo=req.slo,
                                                          output_start=req.output_start, logprobs=req.logprobs,
                                                          grammar=req.grammar))
        stops = set(req.stop_token_ids)
        room = self.backend.info.max_context - len(req.prompt_token_ids)
        try:
            for i in range(min(req.max_tokens, room)):
                start = len(req.prompt_token_ids) + i
                r = await self.verify(created.session_id, Round(sid=0, seq=i + 1, epoch=0, start=start,
                                                                 draft_token_ids=[]))
                if r is None:
                    raise EngineError(500, "a plain decoding step was answered stale", "internal_error")
                yield GeneratedTokens(token_ids=[r.next_token_id], compute_ms=r.compute_s * 1000,
                                      logprobs=[TokenLogprobs.of(t) for t in r.logprobs] if r.logprobs else None)
                if r.next_token_id in stops:
                    break
        finally:
            self.end_session(created.session_id)

    async def _decode_natively(self, decoder: NativeDecoder, req: GenerateRequest
                               ) -> AsyncGenerator[GeneratedTokens, None]:
        room = self.backend.info.max_context - len(req.prompt_token_ids)
        self.stats.native_streams += 1
        last = time.perf_counter()
        stream = decoder.decode(list(req.prompt_token_ids), req.sampling, min(req.max_tokens, room),
                                list(req.stop_token_ids), req.output_index(), req.logprobs,
                                req.grammar.spec() if req.grammar is not None else None)
        try:
            async for tokens, logprobs in stream:
                now = time.perf_counter()  # the backend's pace, queueing included: all it tells us
                yield GeneratedTokens(token_ids=tokens, compute_ms=(now - last) * 1000.0,
                                      logprobs=[TokenLogprobs.of(t) for t in logprobs] if logprobs else None)
                last = now
        except ValueError as exc:  # sampling the backend cannot honour exactly
            raise EngineError(400, str(exc), "unsupported_sampling") from exc
        finally:
            await stream.aclose()

    async def prompt_logprobs(self, req: PromptLogprobsRequest) -> PromptLogprobs:
        """The target's raw logprobs of every prompt token after the first, scored in chunks (one
        job each, ``prefill_chunk`` rows at most: a chunk's rows are its logits)."""
        self._check_request(req.protocol_version, req.prompt_token_ids, SamplingParams())
        if not self.backend.info.verifies_sampled:
            raise EngineError(400, f"the {self.backend.info.backend} backend's rows hold their top entries only: no "
                              "logprobs of given tokens", "unsupported_sampling")
        tokens = req.prompt_token_ids
        session = Session(session_id="prompt-logprobs", sampling=SamplingParams(), slo=LatencyTargets.of(
            None, self._config), state=self.backend.new_state(), committed=list(tokens), prompt_tokens=len(tokens),
            output_start=len(tokens), processing=LogitsProcessing(), logprobs=None, constraint=None,
            last_used=self._clock())
        out: list[TokenLogprobs] = []
        compute_s = 0.0

        def scored(start: int, result: JobResult) -> None:
            nonlocal compute_s
            compute_s += result.compute_s
            tokens_scored = tokens[start + 1:start + 1 + result.logits.shape[0]]  # row j predicts token j + 1
            out.extend(TokenLogprobs.of(t) for t in token_logprobs(result.logits, tokens_scored, req.top_logprobs))

        try:
            await self._prefill(session, tokens[:-1], scored)
        finally:
            self._release_when_idle(session)
        return PromptLogprobs(logprobs=out, compute_ms=compute_s * 1000)

    def end_session(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._release_when_idle(session)
        log.info("session ended", extra={"session": session_id})
        return True

    def expire_idle(self) -> int:
        now = self._clock()
        stale = [s.session_id for s in self._sessions.values()
                 if now - s.last_used > self._ttl and not s.lock.locked() and not s.in_flight]
        for sid in stale:
            self.end_session(sid)
        self.stats.sessions_expired += len(stale)
        return len(stale)

    async def aclose_sessions(self, poll_s: float = 0.01) -> None:
        """End every session and wait until none has a round in flight and the backend has
        closed every live request."""
        ended = list(self._sessions.values())
        for session in ended:
            self.end_session(session.session_id)
        while self._closing or any(s.in_flight for s in ended):
            if self._closing:
                await asyncio.gather(*self._closing, return_exceptions=True)
            else:
                await asyncio.sleep(poll_s)

    async def aclose(self) -> None:
        await self.scheduler.stop()
        for sid in list(self._sessions):
            self.end_session(sid)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self.backend.close()

