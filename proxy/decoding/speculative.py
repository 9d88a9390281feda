"""Speculative decoding over the verifier channel: the draft model proposes, the target verifies.

``speculative_loop`` drives a ``SpeculationState`` (what is verified, in flight, drafted) by a
``PipelinePolicy`` (when to draft, send or wait) and a round trigger (where a round ends); the
drafter and the channel are its only I/O. ``_Speculator`` holds what the loop keeps between its
steps and takes each step (draft a token, send a round, apply an answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

from proxy.cloud.channel import ChannelSession
from proxy.cloud.errors import VerifierUnavailable
from proxy.decoding.context import LoopContext
from proxy.decoding.pipeline import Action
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.speculation import Applied, SpeculationState
from proxy.decoding.threads import in_thread
from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from proxy.draft.prediction import PredictionTrigger
from proxy.rounds.rates import LinkEstimates
from proxy.rounds.round_log import RoundLog
from proxy.rounds.tuning import SegmentClock
from verifier.core.codec import logprobs_from_wire
from verifier.core.logprobs import TokenLogprob
from verifier.core.wire import Stale, Verified


async def speculative_loop(
    req: GenerationRequest, drafter: Drafter, ctx: LoopContext, stats: GenerationStats
) -> AsyncGenerator[list[int], None]:
    """Speculative decoding over the verifier channel, by ``req.policy``: stop-and-wait, or
    pipelined (drafting on top of unverified tokens while rounds are verified), on ``ctx.channel``.
    Yields verified tokens only. With a round log, every verified round's draft-token features and
    outcome are appended to it; with link estimates, every round's timings and every draft time feed them.
    With ``req.tuning`` the rounds are cut by the tuner's current thresholds, measured in
    segments of verified tokens; with ``req.upload`` a round drafted while nothing is in flight
    goes up in batches as its tokens are drafted (the batch sizes planned by PipeSD's DP).
    A round unanswered for ``ctx.round_timeout_s`` loses the verifier."""
    features = ctx.round_log is not None or bool(req.trigger and req.trigger.needs_features)
    dsampling = req.draft_sampling(ctx.proposal_support, features)
    session = await ctx.channel.open(req.generation, req.reproducible)
    run = _Speculator(req, drafter, session, stats, dsampling, ctx.round_log, ctx.estimates, ctx.clock)
    try:
        while True:
            while (ready := session.poll()) is not None:
                if new := run.apply(ready):
                    yield new
            action = req.policy.next_action(run.state, run.can_draft())
            if action is Action.DRAFT:
                await run.draft()
            elif action is Action.SEND:
                await run.send()
            elif new := await run.wait(ctx.round_timeout_s):
                yield new
    finally:
        session.close()


class _Speculator:
    """One request's speculation on one channel session: the state ``speculative_loop`` keeps
    between its steps, and the steps. Each answer applied returns the tokens it verified."""

    def __init__(self, req: GenerationRequest, drafter: Drafter, session: ChannelSession, stats: GenerationStats,
                 dsampling: DraftSampling, round_log: RoundLog | None, estimates: LinkEstimates | None,
                 clock: Callable[[], float]) -> None:
        self.req, self.drafter, self.session, self.stats = req, drafter, session, stats
        self.dsampling, self.round_log, self.estimates, self.clock = dsampling, round_log, estimates, clock
        self.trigger = req.trigger  # trigger 'tuned': replaced whenever the tuner's thresholds move
        self.segments = SegmentClock(req.tuning) if req.tuning is not None else None
        self.limit = len(req.generation.prompt_token_ids) + req.max_tokens
        self.state = SpeculationState.start(req.generation.prompt_token_ids)
        self.sent_at: dict[int, float] = {}
        self.alone: set[int] = set()  # rounds sent with nothing else in flight: their trip is the link's and the pass's
        self.drafted_before = False  # the request's first draft call and first round are not per-token costs
        self.sent_before = False
        self.nothing_at: int | None = None  # a length at which the drafter had nothing to propose
        self.uploaded = 0  # tokens of the round being drafted already sent up as held batches
        # what the request counted before this session (mode auto's earlier paths): the session's counts add to it
        self.before = (stats.wasted, stats.bytes_up, stats.bytes_down)

    def can_draft(self) -> bool:
        """Whether the drafter may add a token to the sequence as it is: room left, no stop token
        drafted, and a proposal where it stands."""
        tokens = self.state.tokens
        return len(tokens) < self.limit - 1 and self.nothing_at != len(tokens) \
            and not (self.state.ahead and tokens[-1] in self.req.stop_token_ids)

    # ---- steps --------------------------------------------------------------------------------
    async def draft(self) -> None:
        """Draft one token into the open round: the round closes at gamma tokens, or its tokens
        so far go up as a held batch where the upload plan cuts one."""
        state, stats, upload = self.state, self.stats, self.req.upload
        tokens = state.tokens
        t0 = self.clock()
        token = await in_thread(self.drafter.draft, list(tokens), self.dsampling)
        elapsed = self.clock() - t0
        stats.draft_s += elapsed
        if self.estimates is not None and token is not None and self.drafted_before:  # the first evaluates the prompt
            self.estimates.observe_draft(elapsed)
        self.drafted_before = True
        if upload is not None and token is not None:
            upload.fit.add_draft(elapsed)
        if token is None:
            self.nothing_at = len(tokens)
            return
        tuning = self.req.tuning
        if tuning is not None and tuning.current != stats.thresholds:
            stats.thresholds = tuning.current
            self.trigger = tuning.trigger(stats.thresholds)
        state.add_draft(token, new_round=self.trigger is not None and self.trigger.ends_round_before(token, state.open))
        if len(state.open) >= self.req.policy.gamma:
            state.close_round()
        elif upload is not None and not state.inflight and not state.closed \
                and len(state.open) in upload.boundaries():
            await self._send_up(self.session.send_held(state.next_seq, state.epoch, state.sent_end + self.uploaded,
                                                       state.open[self.uploaded:]), len(state.open) - self.uploaded)
            self.uploaded = len(state.open)

    async def send(self) -> None:
        """Send the next round (what of it is not up already as held batches)."""
        sent = self.state.take_round(allow_empty=True)
        if sent is None:
            raise RuntimeError("the pipeline policy asked to send with nothing to send")
        self.sent_at[sent.seq] = self.clock()
        if len(self.state.inflight) == 1 and self.sent_before:  # the first one's trip includes the session's prefill
            self.alone.add(sent.seq)
        self.sent_before = True
        await self._send_up(self.session.send(sent, self.uploaded), len(sent.drafts) - self.uploaded)
        self.uploaded = 0

    async def wait(self, timeout_s: float | None) -> list[int]:
        """Wait for the next answer (``timeout_s``: the round deadline) and apply it."""
        t0 = self.clock()
        answer = await self.session.next(timeout_s)
        self.stats.verify_wait_s += self.clock() - t0
        return self.apply(answer)

    async def _send_up(self, frame: Awaitable[None], size: int) -> None:
        """Send a frame of ``size`` draft tokens; with a planned upload, its hand-off time feeds the plan."""
        t0 = self.clock()
        await frame
        if self.req.upload is not None and size:
            self.req.upload.fit.add_batch(size, self.clock() - t0)
        self.stats.upload_batches += 1

    # ---- answers ------------------------------------------------------------------------------
    def apply(self, answer: Verified | Stale) -> list[int]:
        """Apply an answer to the state and count it; the tokens it verified."""
        state, stats, estimates = self.state, self.stats, self.estimates
        applied = state.apply(answer)
        trip = self.clock() - self.sent_at.pop(answer.seq)
        stats.round_trip_s += trip
        self.nothing_at = None
        if applied.stale:
            stats.stale_rounds += 1
        elif isinstance(answer, Verified):
            self._count_verified(answer, applied, trip)
        self.alone.discard(answer.seq)
        wasted, up, down = self.before
        stats.wasted = wasted + state.made - state.used - state.ahead
        stats.bytes_up, stats.bytes_down = up + self.session.bytes_up, down + self.session.bytes_down
        if stats.logprobs is not None and applied.verified:
            stats.record_logprobs(verified_logprobs(answer, applied.verified))
        if self.segments is not None and applied.verified:
            self.segments.verified(len(applied.verified), self.clock(), estimates.rtt_s.value if estimates else None,
                                   estimates.alpha if estimates and estimates.rounds else None, self._search)
        return applied.verified

    def _count_verified(self, answer: Verified, applied: Applied, trip: float) -> None:
        """A verified round's counts, its timings for the link estimates and its line in the round log."""
        stats = self.stats
        predicted = self._count_prediction(applied)
        # the link estimates learn the draft model's acceptance: a prediction's rounds would skew it
        if self.estimates is not None and not predicted:
            if answer.seq in self.alone:  # its trip is the link's and the pass's: timings too
                self.estimates.observe_round(applied.drafted, applied.accepted, trip,
                                             (answer.compute_us + answer.queue_us) / 1e6)
            else:
                self.estimates.observe_acceptance(applied.drafted, applied.accepted)
        stats.rounds += 1
        stats.live_rounds += int(answer.live)
        stats.rows_rounds += int(not answer.live)
        stats.drafted += applied.drafted
        stats.accepted += applied.accepted
        stats.rejections += int(applied.accepted < applied.drafted)
        stats.verify_compute_s += answer.compute_us / 1e6
        if self.round_log is not None and applied.round is not None:
            self.round_log.write(applied.round.drafts, applied.accepted)

    def _count_prediction(self, applied: Applied) -> int:
        """Count a verified round's prediction tokens, drafted and accepted (a prediction's trigger
        learns from them); how many it drafted."""
        drafts = applied.round.drafts if applied.round is not None else []
        predicted = sum(d.predicted for d in drafts)
        predicted_accepted = sum(d.predicted for d in drafts[:applied.accepted])
        self.stats.prediction_drafted += predicted
        self.stats.prediction_accepted += predicted_accepted
        if isinstance(self.trigger, PredictionTrigger):
            self.trigger.learn(predicted, predicted_accepted)
        return predicted

    def _search(self) -> None:
        """Run the tuner's next search in a worker thread (trigger 'tuned')."""
        assert self.req.tuning is not None
        asyncio.get_running_loop().run_in_executor(None, self.req.tuning.advance)


def verified_logprobs(answer: Verified | Stale, verified: list[int]) -> list[TokenLogprob]:
    """The logprobs of the tokens a round verified (the answer's last ones: the verifier reports
    every token it committed, and the edge may have known the first already, as a bonus token)."""
    frames = answer.logprobs if isinstance(answer, Verified) else None
    if frames is None or len(frames) < len(verified):
        raise VerifierUnavailable("the verifier sent a round without the logprobs asked for")
    entries = logprobs_from_wire(frames[len(frames) - len(verified):])
    if [e.token_id for e in entries] != verified:
        raise VerifierUnavailable("the verifier's logprobs are not those of the tokens it verified")
    return entries
