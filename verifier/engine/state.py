"""What the engine's parts share: its configuration and its error, the sequences it holds in the
backend (a session, or a prompt being scored), its counts and a scored round's result."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from verifier.backends.base import LiveHandle, SequenceState
from verifier.core.bounds import expected_tokens_per_round
from verifier.core.grammar import Constraint
from verifier.core.logits import LogitsProcessing
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import SamplingParams, SloTargets


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


@dataclass(kw_only=True)
class HeldSequence:
    """A token sequence held in the backend's KV state, which jobs extend (``verifier.engine.jobs``):
    a session, or a prompt being scored. Its state is released once it has ended and no job of it
    is in flight."""

    state: SequenceState
    slo: LatencyTargets  # a prefill's deadline: ``ttft_ms``; a round's: ``tpot_ms`` per expected token
    whole_rows: bool = True  # its rounds need whole distributions (not plain greedy: ``whole_rows_reasons``)
    in_flight: bool = False  # a job of this sequence is queued or being scored
    closing: bool = False  # ended while in flight: release when the job finishes
    released: bool = False


@dataclass(kw_only=True)
class Session(HeldSequence):
    """An edge's session.

    Invariant: ``committed`` is prompt + verified output; its last token is the *pending* token,
    verified but not yet in the KV state (the next round feeds it first, so its logits score
    draft token 1). KV length == len(committed) - 1 between rounds.
    """

    session_id: str
    sampling: SamplingParams
    committed: list[int]
    prompt_tokens: int
    output_start: int  # where the output begins in committed (the penalties count from there)
    processing: LogitsProcessing  # sampling's logits processing, built once for every round
    logprobs: int | None  # top alternatives of the target's logprobs reported per verified token (None: none)
    constraint: Constraint | None  # the grammar the output must match
    last_used: float
    epoch: int = 0  # advanced when the verified sequence parts from what the edge sent (verifier.core.wire)
    accepted: int = 0  # draft tokens accepted over the session (for the value of its next round)
    rejections: int = 0
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
