"""The engine's sessions: created (checked, opened live or prefilled), looked up, ended, expired
after their TTL, and bounded in number."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from verifier.backends.base import LiveHandle, LiveRoute, TargetBackend
from verifier.core.grammar import GrammarCompiler
from verifier.core.protocol import SessionCreate, SessionCreated
from verifier.engine.jobs import Jobs
from verifier.engine.state import EngineError, EngineStats, LatencyTargets, SchedulingConfig, Session
from verifier.engine.validation import check_session, compile_constraint

log = logging.getLogger("verifier.engine")  # one logger for every part of the engine


class SessionRegistry:
    """Every open session by id. ``on_prefill``: told how long each new session's prompt took."""

    def __init__(self, backend: TargetBackend, jobs: Jobs, stats: EngineStats, config: SchedulingConfig,
                 session_ttl_s: float, max_sessions: int, grammars: GrammarCompiler | None,
                 clock: Callable[[], float]) -> None:
        self._backend = backend
        self._jobs = jobs
        self._stats = stats
        self._config = config
        self._ttl = session_ttl_s
        self._max_sessions = max_sessions
        self.grammars = grammars  # None: no tokenizer known, sessions with a grammar are refused
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self.on_prefill: Callable[[float], None] | None = None

    @property
    def count(self) -> int:
        return len(self._sessions)

    @property
    def live(self) -> int:
        """Sessions held live in the backend's engine now."""
        return sum(1 for s in self._sessions.values() if s.live is not None)

    def ids(self) -> list[str]:
        return list(self._sessions)

    def get(self, session_id: str) -> Session:
        """A live session (404 EngineError if it ended or expired)."""
        session = self._sessions.get(session_id)
        if session is None:
            raise EngineError(404, f"no session {session_id!r} (ended or expired)", "session_not_found")
        return session

    async def create(self, req: SessionCreate) -> SessionCreated:
        short = check_session(self._backend.info, req)
        if len(self._sessions) >= self._max_sessions:
            self.expire_idle()
            if len(self._sessions) >= self._max_sessions:
                raise EngineError(503, "verifier is at its session limit", "overloaded", 1.0)
        slo = LatencyTargets.of(req.slo, self._config)
        constraint = compile_constraint(self.grammars, req.grammar)
        session_id = secrets.token_hex(12)
        session = Session(session_id=session_id, sampling=req.sampling, slo=slo, state=self._backend.new_state(),
                          committed=list(req.prompt_token_ids), prompt_tokens=len(req.prompt_token_ids),
                          output_start=req.output_index(), processing=req.sampling.processing(),
                          logprobs=req.logprobs, constraint=constraint,
                          last_used=self._clock(), whole_rows=bool(short))
        t0 = self._clock()
        try:
            if isinstance(self._backend, LiveRoute):
                session.route_note = self._backend.live_refusal(req)
                if session.route_note is None:
                    session.live = await self._open_live(self._backend, req)
            if session.live is None:
                await self._jobs.prefill(session, req.prompt_token_ids[:-1])
        except BaseException:
            self._jobs.release_when_idle(session)
            raise
        if self.on_prefill is not None:
            self.on_prefill(self._clock() - t0)
        self._sessions[session_id] = session
        self._stats.sessions_created += 1
        self._stats.live_sessions_created += int(session.live is not None)
        log.info("session created", extra={"session": session_id, "prompt_tokens": len(req.prompt_token_ids),
                                           "route": session.route, "route_note": session.route_note})
        return SessionCreated(session_id=session_id, route=session.route, route_note=session.route_note)

    async def _open_live(self, backend: LiveRoute, req: SessionCreate) -> LiveHandle:
        try:
            return await backend.open_live(list(req.prompt_token_ids), req.sampling)
        except Exception as exc:  # the backend failed (cancellation is no Exception: it propagates)
            raise EngineError(500, f"prefill failed: {type(exc).__name__}: {exc}", "internal_error") from exc

    def end(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._jobs.release_when_idle(session)
        log.info("session ended", extra={"session": session_id})
        return True

    def forget(self, session: Session) -> None:
        """Drop a session that cannot go on (a failed live round) and release it now."""
        self._sessions.pop(session.session_id, None)
        self._jobs.release(session)

    def expire_idle(self) -> int:
        now = self._clock()
        stale = [s.session_id for s in self._sessions.values()
                 if now - s.last_used > self._ttl and not s.lock.locked() and not s.in_flight]
        for session_id in stale:
            self.end(session_id)
        self._stats.sessions_expired += len(stale)
        return len(stale)

    def end_all(self) -> list[Session]:
        """End every session; the sessions ended."""
        ended = list(self._sessions.values())
        for session in ended:
            self.end(session.session_id)
        return ended

    async def aclose(self, poll_s: float = 0.01) -> None:
        """End every session and wait until none has a round in flight and the backend has
        closed every live request."""
        ended = self.end_all()
        while self._jobs.closing or any(s.in_flight for s in ended):
            if self._jobs.closing:
                await self._jobs.closed()
            else:
                await asyncio.sleep(poll_s)
