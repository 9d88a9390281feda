"""Scoring a session's rounds: checked, verified inside the backend's live request or as a job of
the target's rows, and applied to the session when done.

A round's outcome (acceptance, commit, KV roll-back) is applied when its batch finishes, whether
or not its caller still waits, so a retried round is answered from the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from verifier.backends.base import LiveHandle, LiveRoute, TargetBackend
from verifier.core.acceptance import RoundOutcome, verify_greedy, verify_sampled
from verifier.core.logprobs import TokenLogprob, token_logprobs
from verifier.core.sampling import SparseDist, target_distribution
from verifier.core.wire import Round, parts_from_sent
from verifier.engine.jobs import JobResult, Jobs
from verifier.engine.registry import SessionRegistry
from verifier.engine.state import EngineError, EngineStats, RoundResult, Session
from verifier.engine.validation import check_round


class Rounds:
    """Scores rounds of the registry's sessions. ``on_round``: told of every scored round
    (drafted, accepted)."""

    def __init__(self, backend: TargetBackend, sessions: SessionRegistry, jobs: Jobs, stats: EngineStats,
                 clock: Callable[[], float]) -> None:
        self._backend = backend
        self._sessions = sessions
        self._jobs = jobs
        self._stats = stats
        self._clock = clock
        self.on_round: Callable[[int, int], None] | None = None

    async def verify(self, session_id: str, r: Round) -> RoundResult | None:
        """Score one round of a session (rounds of a session are scored in the order of calls);
        None when it is stale: drafted in an earlier epoch, or on a bonus position the verified
        token does not match (docs/verify-api.md)."""
        session = self._sessions.get(session_id)
        async with session.lock:
            if session.released:
                raise EngineError(404, f"session {session_id!r} ended", "session_not_found")
            session.last_used = self._clock()
            if r.epoch < session.epoch:
                self._stats.stale_rounds += 1
                return None
            if r.epoch > session.epoch:
                raise EngineError(400, f"round of epoch {r.epoch}; the session is in epoch {session.epoch}",
                                  "invalid_round")
            proposals = check_round(self._backend.info, session.sampling, r)
            draft = list(r.draft_token_ids)
            overlap = len(session.committed) - r.start
            if overlap not in (0, 1) or (overlap == 1 and not draft):
                raise EngineError(400, f"round starts at position {r.start}; {len(session.committed)} tokens are "
                                  "verified", "invalid_round")
            if overlap == 1:  # drafted on past the previous round's bonus token, unknown to the edge then
                if parts_from_sent(0, 0, session.committed[-1], draft[0]):
                    session.epoch += 1
                    self._stats.stale_rounds += 1
                    return None
                draft, proposals = draft[1:], proposals[1:] if proposals else None
            if session.live is not None and isinstance(self._backend, LiveRoute):
                if self._backend.live_fits(session.live, len(session.committed) + len(draft)):
                    return await self._live_round(self._backend, session, session.live, draft, overlap)
                await self._demote(session, session.live)
            return await self._row_round(session, draft, proposals, overlap)

    async def _row_round(self, session: Session, draft: list[int], proposals: list[SparseDist] | None,
                         overlap: int) -> RoundResult:
        """A round verified on the target's rows, as a job of the batch scheduler."""
        value = session.expected_tokens(len(draft))
        deadline_s = session.slo.tpot_ms / 1000 * value
        future = self._jobs.submit(session, [session.committed[-1], *draft], len(draft) + 1, deadline_s, value)
        outcome_future: asyncio.Future[RoundResult] = asyncio.get_running_loop().create_future()

        def finish(done: asyncio.Future[JobResult]) -> None:
            """Apply the round when its batch is done, whoever still waits for it."""
            try:
                outcome_future.set_result(self._apply_round(session, draft, proposals, overlap, done.result()))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the round
                if not session.released:
                    self._backend.truncate(session.state, len(session.committed) - 1)
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
                self._stats.live_rows += len(draft) + 1
                outcome_future.set_result(self._commit(session, draft, len(tokens) - 1, tokens[-1], overlap,
                                                       time.perf_counter() - started, 0.0, None))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the round
                session.closing = True  # the live request is in an unknown state: the session ends
                outcome_future.set_exception(
                    EngineError(500, f"live round failed: {type(exc).__name__}: {exc}", "internal_error"))
            if session.closing:
                self._sessions.forget(session)

        running.add_done_callback(finish)
        return await asyncio.shield(outcome_future)

    async def _demote(self, session: Session, live: LiveHandle) -> None:
        """Move a live session to the row route (the live route's KV share is spent): its live
        request ends and the row route prefills the verified sequence, from vLLM's prefix cache."""
        session.live, session.route_note = None, "the live route's KV share ran out"
        self._jobs.close_live(live)
        self._stats.live_demoted += 1
        try:
            await self._jobs.prefill(session, session.committed[:-1])
        except BaseException:  # its row state is not the verified sequence: the session cannot go on
            self._sessions.end(session.session_id)
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
            self._backend.truncate(session.state, len(session.committed) - 1)
        return round_result

    def _commit(self, session: Session, draft: list[int], accepted: int, next_token_id: int, overlap: int,
                compute_s: float, queue_s: float, logprobs: list[TokenLogprob] | None) -> RoundResult:
        """A verified round into the session and the counts: ``accepted`` drafts, then ``next_token_id``."""
        session.committed.extend([*draft[:accepted], next_token_id])
        session.accepted += accepted
        rejected = parts_from_sent(accepted, len(draft), next_token_id, None)
        session.rejections += int(rejected)
        session.epoch += int(rejected)
        self._stats.rounds += 1
        self._stats.live_rounds += int(session.live is not None)
        self._stats.drafted += len(draft) + overlap
        self._stats.accepted += accepted + overlap
        if self.on_round is not None:
            self.on_round(len(draft) + overlap, accepted + overlap)
        return RoundResult(accepted=accepted + overlap, next_token_id=next_token_id,
                           committed_tokens=len(session.committed), compute_s=compute_s, queue_s=queue_s,
                           logprobs=logprobs, route=session.route)
