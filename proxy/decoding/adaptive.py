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
    rejoin_run: int = 4,
) -> AsyncGenerator[list[int], None]:
    """Mode auto: the fastest lossless path by this edge's link estimates (``proxy.rounds.rates``):
    pipelined or stop-and-wait speculation (``req.policy`` gives gamma and the pipeline depth),
    or cloud streaming; speculation hands over to cloud streaming mid-request when the estimates
    turn (the cloud continues from the verified tokens, so the output stays lossless), and a
    request with a prediction goes back to speculation when the cloud's output rejoins it.
    ``explorer`` picks the requests that speculate whatever the estimates say, to refresh them;
    ``clock`` is both loops' (``speculative_loop``); ``rejoin_run``: the prediction's tokens the
    cloud's output must have repeated (and as many left ahead) to go back to speculation."""
    prediction = drafter if isinstance(drafter, PredictionDrafter) else None
    # the draft model's own round size: a prediction's rounds are longer (``proxy.openai.resolve.predicted``)
    gamma = req.trigger.drafted_per_round if isinstance(req.trigger, PredictionTrigger) else req.policy.gamma
    rates = estimates.rates(gamma, req.max_tokens, req.policy.max_inflight)
    path, measuring = _first_path(req, prediction, gamma, rates, explorer, stats)
    turns = _Turns(req, prediction, gamma, estimates, stats, measuring, rejoin_run)
    produced: list[int] = []
    following: Path | None = path
    while following is not None:
        path, following = following, None
        stats.paths.append(path)
        rest = req.continued(produced)
        if path == "cloud":
            tokens = cloud_loop(rest, client, stats, estimates, clock)
        else:
            policy = req.policy if path == "pipelined" else PipelinePolicy.stop_and_wait(gamma)
            tokens = speculative_loop(replace(rest, policy=policy), drafter, channel, stats, proposal_support,
                                      round_log, estimates, round_timeout_s, clock)
        try:
            async for new in tokens:
                produced.extend(new)
                yield new
                if (following := turns.after(path, produced)) is not None:
                    break
        finally:
            await tokens.aclose()


class _Turns:
    """Where a request of mode auto turns, after each batch of tokens on a path: from speculation
    to the cloud when the estimates say it fell behind (not while a prediction leads, nor before
    the rounds it measures), from the cloud back to speculation when the output rejoins the
    prediction (``rejoin_run`` tokens of it, with as many ahead)."""

    def __init__(self, req: GenerationRequest, prediction: PredictionDrafter | None, gamma: int,
                 estimates: LinkEstimates, stats: GenerationStats, measuring: int, rejoin_run: int) -> None:
        self.req, self.prediction, self.gamma = req, prediction, gamma
        self.estimates, self.stats, self.measuring, self.rejoin_run = estimates, stats, measuring, rejoin_run
        self.speculation: Path = "pipelined" if req.policy.draft_while_waiting else "stop_and_wait"

    def after(self, path: Path, produced: list[int]) -> Path | None:
        """The path to turn to now that ``produced`` tokens are out on ``path``; None: stay."""
        left = self.req.max_tokens - len(produced)
        prediction, stats = self.prediction, self.stats
        if left <= 0:
            return None
        if path == "cloud":
            if prediction is not None and prediction.rejoined([*self.req.prompt_token_ids, *produced],
                                                              self.rejoin_run):
                stats.why = f"the output rejoined the prediction after {len(produced)} tokens"
                return self.speculation
            return None
        if (prediction is not None and not prediction.lost()) or stats.rounds < self.measuring:
            return None
        rates = self.estimates.rates(self.gamma, left, self.req.policy.max_inflight)
        if rates is None or choose(rates, path) != "cloud":
            return None
        why = f"{path} fell behind after {len(produced)} tokens"
        stats.why = _why(rates, why if prediction is None else f"the prediction was left; {why}")
        return "cloud"
