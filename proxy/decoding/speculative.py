"""The edge's session loops: how committed tokens are produced for one request.

Each loop is an async generator yielding lists of newly committed token ids. The caller
stops consuming when it has enough (EOS, stop string, max_tokens); closing the generator
ends the verifier session (without waiting). ``speculative_loop`` drives a
``SpeculationState`` (what is verified, in flight, drafted) by a ``PipelinePolicy`` (when to
draft, send or wait) and a round trigger (where a round ends); the drafter and the channel
are its only I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.cloud.errors import VerifierUnavailable
from proxy.decoding.pipeline import Action, PipelinePolicy
from proxy.decoding.speculation import SpeculationState
from proxy.draft.base import Drafter
from proxy.draft.prediction import PredictionDrafter, PredictionTrigger
from proxy.openai.output import Stats
from proxy.rounds.rates import Explorer, LinkEstimates, Path, choose
from proxy.rounds.round_log import RoundLog
from proxy.rounds.tuning import SegmentClock, ThresholdTuner
from proxy.rounds.upload_plan import UploadPlanner
from verifier.core.codec import logprobs_from_wire
from verifier.core.drafting import DraftSampling, DraftTrigger
from verifier.core.grammar import Constraint
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import GrammarParams, SamplingParams, SloTargets, whole_rows_reasons
from verifier.core.wire import Stale, Verified

T = TypeVar("T")


@dataclass
class GenerationStats:
    """Per-request counters, named as in the glossary (``verifier.core.sampling``);
    ``verify_compute_s`` sums the verifier's ``compute_ms``."""

    mode: str
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    rejections: int = 0  # rounds that ended on a rejected draft token
    live_rounds: int = 0  # verify rounds scored by the verifier's live route (vLLM's own spec decoding)
    rows_rounds: int = 0  # verify rounds scored on the verifier's row route (``rounds`` also counts cloud chunks)
    stale_rounds: int = 0  # rounds answered stale (drafted on a token that was then rejected)
    wasted: int = 0  # draft tokens drafted that did not become output
    draft_s: float = 0.0
    verify_wait_s: float = 0.0  # time spent waiting for the verifier with nothing else to do
    round_trip_s: float = 0.0  # summed time from sending each round to reading its answer
    verify_compute_s: float = 0.0  # cloud compute reported by the verifier
    bytes_up: int = 0
    bytes_down: int = 0
    paths: list[str] = field(default_factory=list)  # the paths that served it, in order (a resume adds one)
    why: str = ""  # mode auto: the estimates behind the last choice; a forced mode: that mode
    cloud_losses: int = 0  # times the verifier was lost during the request (each one resumed or fell back)
    degraded: bool = False  # the draft model continued alone: the tokens from then on are unverified
    degraded_reason: str = ""
    unverified_tokens: int = 0
    thresholds: tuple[float, float] | None = None  # trigger 'tuned': the last (per_token, cumulative) drafted with
    upload_batches: int = 0  # frames of draft tokens sent up (a round sent in batches counts each)
    prediction_drafted: int = 0  # draft tokens taken from the request's prediction (Predicted Outputs)
    prediction_accepted: int = 0  # of those, the ones the verifier accepted
    #: when the request asked for logprobs: the target's, one per token the loops yielded, in order
    #: (None for a token the draft model produced alone); the loops extend it before each yield
    logprobs: list[TokenLogprob | None] | None = None

    def took(self, path: str, why: str) -> None:
        """A forced mode's path (mode auto chooses and explains its own in ``adaptive_loop``)."""
        self.paths.append(path)
        self.why = why

    def record_logprobs(self, entries: Sequence[TokenLogprob | None]) -> None:
        if self.logprobs is not None:
            self.logprobs.extend(entries)

    def as_dict(self) -> Stats:
        d: Stats = {
            "mode": self.mode,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "rejections": self.rejections,
            "acceptance_rate": round(self.accepted / self.drafted, 4) if self.drafted else 0.0,
            "stale_rounds": self.stale_rounds,
            "wasted": self.wasted,
            "draft_ms": round(self.draft_s * 1000, 2),
            "verify_wait_ms": round(self.verify_wait_s * 1000, 2),
            "round_trip_ms": round(self.round_trip_s * 1000, 2),
            "verify_compute_ms": round(self.verify_compute_s * 1000, 2),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }
        if self.live_rounds or self.rows_rounds:  # which verifier route scored the verify rounds
            d["live_rounds"], d["rows_rounds"] = self.live_rounds, self.rows_rounds
            d["verifier_route"] = "+".join(r for r, n in (("live", self.live_rounds), ("rows", self.rows_rounds)) if n)
        if self.paths:
            d["path"] = ">".join(self.paths)
            d["why"] = self.why
        if self.thresholds is not None:
            d["threshold_per_token"], d["threshold_cumulative"] = self.thresholds
        if self.upload_batches:
            d["upload_batches"] = self.upload_batches
        if self.prediction_drafted:
            d["prediction_drafted"], d["prediction_accepted"] = self.prediction_drafted, self.prediction_accepted
        if self.cloud_losses:
            d["cloud_losses"] = self.cloud_losses
        if self.degraded:
            d["degraded"] = True
            d["degraded_reason"] = self.degraded_reason
            d["unverified_tokens"] = self.unverified_tokens
        return d


@dataclass(frozen=True)
class GenerationRequest:
    prompt_token_ids: list[int]
    max_tokens: int
    sampling: SamplingParams  # temperature, truncation, seed and logits processing, for draft and target alike
    stop_token_ids: frozenset[int]
    policy: PipelinePolicy  # when to draft, send a round or wait; its gamma 0 is cloud-only decoding
    trigger: DraftTrigger | None = None  # when a model drafter ends a round early (None: gamma tokens)
    slo: SloTargets | None = None  # latency targets the verifier schedules this request's rounds by
    output_start: int | None = None  # where the output begins in prompt_token_ids (None: after them)
    logprobs: int | None = None  # the target's logprobs of each output token, with this many alternatives
    grammar: GrammarParams | None = None  # what the output must match, as the verifier is told
    constraint: Constraint | None = None  # the same grammar on the edge: the draft's mask (this generation's own)
    tuning: ThresholdTuner | None = None  # trigger 'tuned': the edge's tuner of the dual threshold (not `trigger`)
    upload: UploadPlanner | None = None  # stop-and-wait rounds go up in batches as drafted, by this plan
    reproducible: bool = False  # a seeded sampled generation: the same seed must give the same output
    prediction: tuple[int, ...] | None = None  # OpenAI Predicted Outputs: tokens drafted where the output follows them

    def output_index(self) -> int:
        return len(self.prompt_token_ids) if self.output_start is None else self.output_start

    @property
    def whole_rows(self) -> bool:
        """Whether its rounds need the target's whole distributions, not only each row's top entry
        (plain greedy): the verifier's rule (``whole_rows_reasons``). A verifier may score such
        rounds at another cost (vLLM's backend: one request per row)."""
        return bool(whole_rows_reasons(self.sampling, self.logprobs, self.grammar))

    def continued(self, produced: list[int]) -> GenerationRequest:
        """The request that continues after ``produced``: the same sampling and seed, the produced
        tokens appended to the prompt (still output for the penalties), the budget reduced by them."""
        if not produced:
            return self
        return replace(self, prompt_token_ids=[*self.prompt_token_ids, *produced],
                       max_tokens=self.max_tokens - len(produced), output_start=self.output_index())


def _draft_sampling(req: GenerationRequest, proposal_support: int, record_features: bool = False) -> DraftSampling:
    sp = req.sampling
    return DraftSampling(sp.temperature, sp.top_p, sp.seed, proposal_support, record_features, top_k=sp.top_k,
                         min_p=sp.min_p, processing=sp.processing(), output_start=req.output_index(),
                         constraint=req.constraint)


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run a drafter call in a worker thread; if the caller is cancelled, wait for the thread
    to finish first (the drafter goes back to its pool only once nothing uses it)."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


async def speculative_loop(
    req: GenerationRequest,
    drafter: Drafter,
    channel: VerifierChannel,
    stats: GenerationStats,
    proposal_support: int,
    round_log: RoundLog | None = None,
    estimates: LinkEstimates | None = None,
    round_timeout_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncGenerator[list[int], None]:
    """Speculative decoding over the verifier channel, by ``req.policy``: stop-and-wait, or
    pipelined (drafting on top of unverified tokens while rounds are verified). Yields verified
    tokens only. With a round log, every verified round's draft-token features and outcome are
    appended to it; with link estimates, every round's timings and every draft time feed them.
    With ``req.tuning`` the rounds are cut by the tuner's current thresholds, measured in
    segments of verified tokens; with ``req.upload`` a round drafted while nothing is in flight
    goes up in batches as its tokens are drafted (the batch sizes planned by PipeSD's DP).
    ``clock`` (seconds) times the draft calls, round trips, waits and upload batches."""
    tuning, upload = req.tuning, req.upload
    trigger = req.trigger
    segments = SegmentClock(tuning) if tuning is not None else None
    features = round_log is not None or bool(trigger and trigger.needs_features)
    dsampling = _draft_sampling(req, proposal_support, features)
    policy = req.policy
    limit = len(req.prompt_token_ids) + req.max_tokens
    session = await channel.open(req.prompt_token_ids, req.sampling, req.slo, req.output_start, req.logprobs,
                                 req.grammar, req.reproducible)
    state = SpeculationState.start(req.prompt_token_ids)
    sent_at: dict[int, float] = {}
    alone: set[int] = set()  # rounds sent with nothing else in flight: their trip is the link's and the pass's
    drafted_before = sent_before = False  # the request's first draft call and first round are not per-token costs
    nothing_at: int | None = None  # a length at which the drafter had nothing to propose
    uploaded = 0  # tokens of the round being drafted already sent up as held batches

    def search() -> None:
        assert tuning is not None
        asyncio.get_running_loop().run_in_executor(None, tuning.advance)

    async def send_up(frame: Awaitable[None], size: int) -> None:
        """Send a frame of ``size`` draft tokens; with a planned upload, its hand-off time feeds the plan."""
        t0 = clock()
        await frame
        if upload is not None and size:
            upload.fit.add_batch(size, clock() - t0)
        stats.upload_batches += 1

    def apply(answer: Verified | Stale) -> list[int]:
        nonlocal nothing_at
        applied = state.apply(answer)
        trip = clock() - sent_at.pop(answer.seq)
        stats.round_trip_s += trip
        nothing_at = None
        if applied.stale:
            stats.stale_rounds += 1
        elif isinstance(answer, Verified):
            drafts = applied.round.drafts if applied.round is not None else []
            predicted = sum(d.predicted for d in drafts)
            predicted_accepted = sum(d.predicted for d in drafts[:applied.accepted])
            stats.prediction_drafted += predicted
            stats.prediction_accepted += predicted_accepted
            if isinstance(trigger, PredictionTrigger):
                trigger.learn(predicted, predicted_accepted)
            # the link estimates learn the draft model's acceptance: a prediction's rounds would skew it
            if estimates is not None and answer.seq in alone and not predicted:
                estimates.observe_round(applied.drafted, applied.accepted, trip,
                                        (answer.compute_us + answer.queue_us) / 1e6)
            stats.rounds += 1
            stats.live_rounds += int(answer.live)
            stats.rows_rounds += int(not answer.live)
            stats.drafted += applied.drafted
            stats.accepted += applied.accepted
            stats.rejections += int(applied.accepted < applied.drafted)
            stats.verify_compute_s += answer.compute_us / 1e6
            if round_log is not None and applied.round is not None:
                round_log.write(applied.round.drafts, applied.accepted)
        alone.discard(answer.seq)
        stats.wasted = state.made - state.used - state.ahead
        stats.bytes_up, stats.bytes_down = session.bytes_up, session.bytes_down
        if stats.logprobs is not None and applied.verified:
            stats.record_logprobs(verified_logprobs(answer, applied.verified))
        if segments is not None and applied.verified:
            segments.verified(len(applied.verified), clock(), estimates.rtt_s.value if estimates else None,
                              estimates.alpha if estimates and estimates.rounds else None, search)
        return applied.verified

    try:
        while True:
            while (ready := session.poll()) is not None:
                if new := apply(ready):
                    yield new
            tokens = state.tokens
            can_draft = len(tokens) < limit - 1 and nothing_at != len(tokens) \
                and not (state.ahead and tokens[-1] in req.stop_token_ids)
            action = policy.next_action(state, can_draft)
            if action is Action.DRAFT:
                t0 = clock()
                token = await _in_thread(drafter.draft, list(tokens), dsampling)
                elapsed = clock() - t0
                stats.draft_s += elapsed
                if estimates is not None and token is not None and drafted_before:  # the first evaluates the prompt too
                    estimates.observe_draft(elapsed)
                drafted_before = True
                if upload is not None and token is not None:
                    upload.fit.add_draft(elapsed)
                if token is None:
                    nothing_at = len(tokens)
                    continue
                if tuning is not None and tuning.current != stats.thresholds:
                    stats.thresholds = tuning.current
                    trigger = tuning.trigger(stats.thresholds)
                state.add_draft(token, new_round=trigger is not None and trigger.ends_round_before(token, state.open))
                if len(state.open) >= policy.gamma:
                    state.close_round()
                elif upload is not None and not state.inflight and not state.closed \
                        and len(state.open) in upload.boundaries():
                    await send_up(session.send_held(state.next_seq, state.epoch, state.sent_end + uploaded,
                                                    state.open[uploaded:]), len(state.open) - uploaded)
                    uploaded = len(state.open)
            elif action is Action.SEND:
                sent = state.take_round(allow_empty=True)
                if sent is None:
                    raise RuntimeError("the pipeline policy asked to send with nothing to send")
                sent_at[sent.seq] = clock()
                if len(state.inflight) == 1 and sent_before:  # the first one's trip includes the session's prefill
                    alone.add(sent.seq)
                sent_before = True
                await send_up(session.send(sent, uploaded), len(sent.drafts) - uploaded)
                uploaded = 0
            else:
                t0 = clock()
                answer = await session.next(round_timeout_s)
                stats.verify_wait_s += clock() - t0
                if new := apply(answer):
                    yield new
    finally:
        session.close()


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


async def cloud_loop(
    req: GenerationRequest, client: VerifierClient, stats: GenerationStats, estimates: LinkEstimates | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncGenerator[list[int], None]:
    """Cloud-only: the target decodes alone in the cloud and streams token ids. Its step times
    (after the first token, which includes the prefill) feed the link estimates."""
    up0, down0 = client.bytes_up - stats.bytes_up, client.bytes_down - stats.bytes_down  # counts add up
    t0 = clock() - stats.verify_wait_s
    first = True
    async for chunk in client.generate(req.prompt_token_ids, req.sampling, req.max_tokens,
                                       sorted(req.stop_token_ids), req.slo, req.output_start, req.logprobs,
                                       req.grammar):
        stats.rounds += 1
        stats.verify_compute_s += chunk.compute_ms / 1000
        stats.verify_wait_s = clock() - t0
        stats.bytes_up = client.bytes_up - up0
        stats.bytes_down = client.bytes_down - down0
        if estimates is not None and not first and chunk.token_ids:
            estimates.observe_cloud_step(chunk.compute_ms / 1000 / len(chunk.token_ids))
        first = False
        if stats.logprobs is not None:
            if chunk.logprobs is None or len(chunk.logprobs) != len(chunk.token_ids):
                raise VerifierUnavailable("the verifier sent tokens without the logprobs asked for")
            stats.record_logprobs([t.parsed() for t in chunk.logprobs])
        yield chunk.token_ids


async def draft_loop(
    req: GenerationRequest, drafter: Drafter, stats: GenerationStats
) -> AsyncGenerator[list[int], None]:
    """Edge-only: the draft model alone (fast, lower quality; also the offline fallback)."""
    dsampling = _draft_sampling(req, 1)
    context = list(req.prompt_token_ids)
    for _ in range(req.max_tokens):
        t0 = time.perf_counter()
        token = await asyncio.to_thread(drafter.next_token, context, dsampling)
        stats.draft_s += time.perf_counter() - t0
        context.append(token)
        stats.record_logprobs([None])  # no target has seen it
        yield [token]


def _why(rates: dict[Path, float] | None, reason: str) -> str:
    if rates is None:
        return reason
    return reason + ": estimated tok/s " + ", ".join(f"{p} {r:.1f}" for p, r in rates.items())


async def adaptive_loop(
    req: GenerationRequest,
    drafter: Drafter,
    channel: VerifierChannel,
    client: VerifierClient,
    stats: GenerationStats,
    proposal_support: int,
    estimates: LinkEstimates,
    explorer: Explorer,
    round_log: RoundLog | None = None,
    round_timeout_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncGenerator[list[int], None]:
    """Mode auto: the fastest lossless path by this edge's link estimates (``proxy.rounds.rates``):
    pipelined or stop-and-wait speculation (``req.policy`` gives gamma and the pipeline depth),
    or cloud streaming; speculation hands over to cloud streaming mid-request when the estimates
    turn (the cloud continues from the verified tokens, so the output stays lossless).
    ``explorer`` picks the requests that speculate whatever the estimates say, to refresh them;
    ``clock`` is both loops' (``speculative_loop``)."""
    prediction = drafter if isinstance(drafter, PredictionDrafter) else None
    # the draft model's own round size: a prediction's rounds are longer (``proxy.openai.resolve.predicted``)
    gamma = req.trigger.drafted_per_round if isinstance(req.trigger, PredictionTrigger) else req.policy.gamma
    inflight = req.policy.max_inflight
    rates = estimates.rates(gamma, req.max_tokens, inflight)
    if prediction is not None:  # drafts that cost nothing: speculate while the output follows them
        path: Path = "pipelined" if req.policy.draft_while_waiting else "stop_and_wait"
        stats.why = "prediction"
    elif rates is None or explorer.explore(rates is not None and choose(rates, None) == "cloud") or gamma == 0:
        path = "pipelined" if req.policy.draft_while_waiting else "stop_and_wait"
        stats.why = "no estimates yet" if rates is None else _why(rates, "refreshing the estimates")
    else:
        path = choose(rates, None)
        stats.why = _why(rates, "fastest")
    stats.paths.append(path)
    produced: list[int] = []
    if path != "cloud":
        policy = req.policy if path == "pipelined" else PipelinePolicy.stop_and_wait(gamma)
        spec = speculative_loop(replace(req, policy=policy), drafter, channel, stats, proposal_support, round_log,
                                estimates, round_timeout_s, clock)
        handover = False
        try:
            async for new in spec:
                produced.extend(new)
                yield new
                left = req.max_tokens - len(produced)
                if prediction is not None and not prediction.lost():
                    continue
                rates = estimates.rates(gamma, left, inflight)
                if left > 0 and rates is not None and choose(rates, path) == "cloud":
                    why = f"{path} fell behind after {len(produced)} tokens"
                    stats.why = _why(rates, why if prediction is None else f"the prediction was left; {why}")
                    handover = True
                    break
        finally:
            await spec.aclose()
        if not handover:
            return
        stats.paths.append("cloud")
    async for new in cloud_loop(req.continued(produced), client, stats, estimates, clock):
        yield new
