"""``VerifierEngine``: the verifier's one entry point (the app, the channel, the metrics), composing
the engine's parts over one backend and one batch scheduler."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from verifier.backends.base import TargetBackend
from verifier.core.grammar import GrammarCompiler
from verifier.core.protocol import (
    GeneratedTokens,
    GenerateRequest,
    PromptLogprobs,
    PromptLogprobsRequest,
    SessionCreate,
    SessionCreated,
)
from verifier.core.wire import Round
from verifier.engine.generation import CloudGeneration
from verifier.engine.jobs import Jobs
from verifier.engine.registry import SessionRegistry
from verifier.engine.rounds import Rounds
from verifier.engine.scoring import PromptScoring
from verifier.engine.state import EngineStats, RoundResult, SchedulingConfig, Session
from verifier.scheduling.estimator import VerifyTimeEstimator, calibration_shapes
from verifier.scheduling.policy import Budget
from verifier.scheduling.scheduler import BatchScheduler


class VerifierEngine:
    """Sessions and their rounds, cloud-only decoding and prompt scoring over one backend (the
    package ``verifier.engine`` says how); each call goes to the part that does it."""

    def __init__(self, backend: TargetBackend, session_ttl_s: float, max_sessions: int,
                 scheduling: SchedulingConfig | None = None, estimator: VerifyTimeEstimator | None = None,
                 grammars: GrammarCompiler | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds, the scheduler's and the sessions' (deadlines, pass times, idle time)."""
        self.backend = backend
        self._config = scheduling or SchedulingConfig()
        self.scheduler = BatchScheduler(
            backend, estimator or VerifyTimeEstimator(),
            Budget(self._config.max_batch_tokens, self._config.max_batch_rounds), self._config.max_queue_delay_s,
            clock)
        self.stats = EngineStats()
        self._jobs = Jobs(backend, self.scheduler, self._config, clock)
        self._sessions = SessionRegistry(backend, self._jobs, self.stats, self._config, session_ttl_s, max_sessions,
                                         grammars, clock)
        self._rounds = Rounds(backend, self._sessions, self._jobs, self.stats, clock)
        self._generation = CloudGeneration(backend, self._sessions, self._rounds, self.stats)
        self._scoring = PromptScoring(backend, self._jobs, self._config)

    @property
    def grammars(self) -> GrammarCompiler | None:
        """None: no tokenizer known, sessions with a grammar are refused."""
        return self._sessions.grammars

    # told of every scored round (drafted, accepted) and every prompt prefill (seconds): the metrics
    @property
    def on_round(self) -> Callable[[int, int], None] | None:
        return self._rounds.on_round

    @on_round.setter
    def on_round(self, callback: Callable[[int, int], None] | None) -> None:
        self._rounds.on_round = callback

    @property
    def on_prefill(self) -> Callable[[float], None] | None:
        return self._sessions.on_prefill

    @on_prefill.setter
    def on_prefill(self, callback: Callable[[float], None] | None) -> None:
        self._sessions.on_prefill = callback

    def calibrate(self) -> int:
        """Time ``calibration_passes`` synthetic rounds (before serving; blocking), so the batch
        policy's time estimates fit this backend from the first request."""
        shapes = calibration_shapes(self._config.calibration_passes, self.backend.info.max_context,
                                    self._config.max_batch_tokens)
        return self.scheduler.calibrate(shapes, self._config.prefill_chunk)

    @property
    def session_count(self) -> int:
        return self._sessions.count

    @property
    def live_sessions(self) -> int:
        """Sessions held live in the backend's engine now."""
        return self._sessions.live

    def session_ids(self) -> list[str]:
        return self._sessions.ids()

    def session(self, session_id: str) -> Session:
        """A live session (404 EngineError if it ended or expired)."""
        return self._sessions.get(session_id)

    async def create_session(self, req: SessionCreate) -> SessionCreated:
        return await self._sessions.create(req)

    async def verify(self, session_id: str, r: Round) -> RoundResult | None:
        """Score one round of a session (``Rounds.verify``); None when it is stale."""
        return await self._rounds.verify(session_id, r)

    def generate(self, req: GenerateRequest) -> AsyncGenerator[GeneratedTokens, None]:
        """Cloud-only decoding (``CloudGeneration``): nothing runs until the first token is asked for."""
        return self._generation.generate(req)

    async def prompt_logprobs(self, req: PromptLogprobsRequest) -> PromptLogprobs:
        return await self._scoring.prompt_logprobs(req)

    def end_session(self, session_id: str) -> bool:
        return self._sessions.end(session_id)

    def expire_idle(self) -> int:
        return self._sessions.expire_idle()

    async def aclose_sessions(self, poll_s: float = 0.01) -> None:
        """End every session and wait until none has a round in flight and the backend has
        closed every live request."""
        await self._sessions.aclose(poll_s)

    async def aclose(self) -> None:
        await self.scheduler.stop()
        self._sessions.end_all()
        await self._jobs.closed()
        self.backend.close()
