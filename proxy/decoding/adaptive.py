"""Mode auto: the fastest lossless path by this edge's link estimates, chosen per request and
left for cloud streaming mid-request when the estimates turn."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.decoding.alone import cloud_loop
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.speculative import speculative_loop
from proxy.draft.base import Drafter
from proxy.draft.prediction import PredictionDrafter, PredictionTrigger
from proxy.rounds.rates import Explorer, LinkEstimates, Path, choose
from proxy.rounds.round_log import RoundLog


def _why(rates: dict[Path, float] | None, reason: str) -> str:
    if rates is None:
        return reason
    return reason + ": estimated tok/s " + ", ".join(f"{p} {r:.1f}" for p, r in rates.items())


def _first_path(req: GenerationRequest, prediction: PredictionDrafter | None, gamma: int,
                rates: dict[Path, float] | None, explorer: Explorer, stats: GenerationStats) -> tuple[Path, int]:
    """The path a request starts on (its reason in ``stats.why``): speculation while a prediction
    leads, without estimates, when the explorer asks or with nothing to draft; else the fastest.
    With it, the rounds it verifies before it may hand over (the explorer's when it measures)."""
    speculation: Path = "pipelined" if req.policy.draft_while_waiting else "stop_and_wait"
    if prediction is not None:  # drafts that cost nothing: speculate while the output follows them
        stats.why = "prediction"
        return speculation, 0
    if rates is None or explorer.explore(rates is not None and choose(rates, None) == "cloud") or gamma == 0:
        stats.why = "no estimates yet" if rates is None else _why(rates, "refreshing the estimates")
        return speculation, explorer.rounds
    stats.why = _why(rates, "fastest")
    return choose(rates, None), 0


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
    path, measuring = _first_path(req, prediction, gamma, rates, explorer, stats)
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
                if (prediction is not None and not prediction.lost()) or stats.rounds < measuring:
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
