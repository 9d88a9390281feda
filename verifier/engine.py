"""The verifier engine: sessions holding a verified prefix and its KV state, and rounds.

Invariant per session: ``committed`` is prompt + verified output; its last token is the
*pending* token, verified but not yet in the KV state (the next round feeds it first, so
its logits score draft token 1). KV length == len(committed) - 1 between rounds.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from verifier.backends.base import SequenceState, TargetBackend
from verifier.core.acceptance import verify_greedy, verify_sampled
from verifier.core.codec import decode_proposals
from verifier.core.protocol import (
    PROTOCOL_VERSION,
    GeneratedTokens,
    GenerateRequest,
    SamplingParams,
    SessionCreate,
    SessionCreated,
    VerifyRequest,
    VerifyResponse,
)
from verifier.core.sampling import target_distribution

log = logging.getLogger(__name__)

T = TypeVar("T")


class EngineError(Exception):
    """A request the engine refuses; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Session:
    session_id: str
    sampling: SamplingParams
    state: SequenceState
    committed: list[int]
    prompt_tokens: int
    last_used: float
    last_round: int = 0
    last_response: VerifyResponse | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class EngineStats:
    sessions_created: int = 0
    sessions_expired: int = 0
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    compute_s: float = 0.0


class VerifierEngine:
    def __init__(self, backend: TargetBackend, session_ttl_s: float, max_sessions: int) -> None:
        self.backend = backend
        self._ttl = session_ttl_s
        self._max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._model_lock = asyncio.Lock()  # one forward at a time on the one model
        self.stats = EngineStats()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def _run_model(self, fn: Callable[..., T], *args: object) -> tuple[T, float]:
        """Run a backend call off the event loop, one at a time; returns (result, seconds)."""
        async with self._model_lock:
            t0 = time.perf_counter()
            result = await asyncio.to_thread(fn, *args)
            dt = time.perf_counter() - t0
            self.stats.compute_s += dt
            return result, dt

    async def create_session(self, req: SessionCreate) -> SessionCreated:
        info = self.backend.info
        if req.protocol_version != PROTOCOL_VERSION:
            raise EngineError(400, f"unsupported protocol_version {req.protocol_version}", "bad_protocol")
        if any(t < 0 or t >= info.vocab_size for t in req.prompt_token_ids):
            raise EngineError(400, "prompt token id outside the vocabulary", "invalid_token")
        if len(req.prompt_token_ids) >= info.max_context:
            raise EngineError(400, "prompt fills the target's context", "context_length_exceeded")
        if len(self._sessions) >= self._max_sessions:
            self.expire_idle()
            if len(self._sessions) >= self._max_sessions:
                raise EngineError(503, "verifier is at its session limit", "overloaded")
        state = self.backend.new_state()
        prefix = req.prompt_token_ids[:-1]
        if prefix:
            try:
                await self._run_model(self.backend.extend, state, prefix, 0)
            except BaseException:
                self.backend.release(state)
                raise
        sid = secrets.token_hex(12)
        self._sessions[sid] = Session(
            session_id=sid,
            sampling=req.sampling,
            state=state,
            committed=list(req.prompt_token_ids),
            prompt_tokens=len(req.prompt_token_ids),
            last_used=time.monotonic(),
        )
        self.stats.sessions_created += 1
        log.info("session created", extra={"session": sid, "prompt_tokens": len(req.prompt_token_ids)})
        return SessionCreated(
            session_id=sid, prompt_tokens=len(req.prompt_token_ids), max_context=info.max_context
        )

    def session(self, session_id: str) -> Session:
        """A live session (404 EngineError if it ended or expired)."""
        session = self._sessions.get(session_id)
        if session is None:
            raise EngineError(404, f"no session {session_id!r} (ended or expired)", "session_not_found")
        return session

    def _check_round(self, session: Session, req: VerifyRequest) -> None:
        vocab = self.backend.info.vocab_size
        drafted = len(req.draft_token_ids)
        if any(t < 0 or t >= vocab for t in req.draft_token_ids):
            raise EngineError(400, "draft token id outside the vocabulary", "invalid_token")
        if req.proposals is not None:
            if len(req.proposals) != drafted:
                raise EngineError(400, "one proposal per draft token is required", "invalid_proposal")
            if session.sampling.temperature == 0:
                raise EngineError(400, "proposals are meaningless for a greedy session", "invalid_proposal")
        if len(session.committed) + drafted >= self.backend.info.max_context:
            raise EngineError(400, "round would exceed the target's context", "context_length_exceeded")

    async def verify(self, session_id: str, req: VerifyRequest) -> VerifyResponse:
        session = self.session(session_id)
        async with session.lock:
            session.last_used = time.monotonic()
            if req.round == session.last_round and session.last_response is not None:
                return session.last_response  # a retried round: answer, never re-apply
            if req.round != session.last_round + 1:
                raise EngineError(
                    409, f"expected round {session.last_round + 1}, got {req.round}", "round_out_of_order"
                )
            self._check_round(session, req)
            proposals = decode_proposals(req)
            try:
                for dist in proposals or ():
                    dist.validate(self.backend.info.vocab_size)
            except ValueError as exc:
                raise EngineError(400, str(exc), "invalid_proposal") from exc
            draft = list(req.draft_token_ids)
            feed = [session.committed[-1], *draft]
            try:
                logits, dt = await self._run_model(self.backend.extend, session.state, feed, len(feed))
            except BaseException:
                self.backend.truncate(session.state, len(session.committed) - 1)
                raise
            sp = session.sampling
            try:
                if sp.temperature == 0:
                    outcome = verify_greedy(draft, logits)
                else:
                    probs = target_distribution(logits, sp.temperature, sp.top_p)
                    outcome = verify_sampled(draft, proposals, probs, sp.seed, len(session.committed))
            except ValueError as exc:
                # restore the state the round started from, then refuse the round
                self.backend.truncate(session.state, len(session.committed) - 1)
                raise EngineError(400, str(exc), "invalid_proposal") from exc
            session.committed.extend(draft[: outcome.accepted])
            session.committed.append(outcome.next_token_id)
            self.backend.truncate(session.state, len(session.committed) - 1)
            resp = VerifyResponse(
                round=req.round,
                accepted=outcome.accepted,
                next_token_id=outcome.next_token_id,
                committed_tokens=len(session.committed),
                compute_ms=dt * 1000.0,
            )
            session.last_round = req.round
            session.last_response = resp
            self.stats.rounds += 1
            self.stats.drafted += len(draft)
            self.stats.accepted += outcome.accepted
            return resp

    async def generate(self, req: GenerateRequest) -> AsyncGenerator[GeneratedTokens, None]:
        """Cloud-only decoding through the same round code path (rounds with no drafts),
        so its greedy output is by construction the verifier's greedy output."""
        created = await self.create_session(SessionCreate(prompt_token_ids=req.prompt_token_ids,
                                                          sampling=req.sampling))
        stops = set(req.stop_token_ids)
        room = self.backend.info.max_context - len(req.prompt_token_ids)
        try:
            for i in range(min(req.max_tokens, room)):
                r = await self.verify(created.session_id, VerifyRequest(round=i + 1))
                yield GeneratedTokens(token_ids=[r.next_token_id], compute_ms=r.compute_ms)
                if r.next_token_id in stops:
                    break
        finally:
            self.end_session(created.session_id)

    def end_session(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self.backend.release(session.state)
        log.info("session ended", extra={"session": session_id})
        return True

    def expire_idle(self) -> int:
        now = time.monotonic()
        stale = [s.session_id for s in self._sessions.values()
                 if now - s.last_used > self._ttl and not s.lock.locked()]
        for sid in stale:
            self.end_session(sid)
        self.stats.sessions_expired += len(stale)
        return len(stale)

    def close(self) -> None:
        for sid in list(self._sessions):
            self.end_session(sid)
