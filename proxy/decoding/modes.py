"""The decoding loop a request's mode runs (``ModeLoops``): cloud streaming, speculation, mode
auto's choice between them, or the draft model alone; resumed or continued on the draft model
when the verifier is lost (``proxy.decoding.resume``). It owns what the loops share across
requests: the link estimates, the explorers, the round log."""

from __future__ import annotations

import contextlib

from proxy.cloud.breaker import CircuitBreaker
from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.decoding.adaptive import adaptive_loop
from proxy.decoding.alone import cloud_loop, draft_loop
from proxy.decoding.context import LoopContext
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.resume import Loop, RecoveryPolicy, resumable
from proxy.decoding.speculative import speculative_loop
from proxy.draft.base import Drafter
from proxy.draft.pool import DrafterPool
from proxy.draft.prediction import PredictionDrafter
from proxy.rounds.rates import Explorer, LinkEstimates
from proxy.rounds.round_log import RoundLog
from proxy.settings import EdgeSettings, Mode


class ModeLoops:
    """Builds each request's decoding loop by its mode, over this edge's verifier and drafters."""

    def __init__(self, settings: EdgeSettings, drafters: DrafterPool, client: VerifierClient,
                 channel: VerifierChannel, breaker: CircuitBreaker) -> None:
        self.settings, self.drafters, self.client, self.channel, self.breaker = (
            settings, drafters, client, channel, breaker)
        self.round_log = RoundLog(settings.round_log) if settings.round_log else None
        #: what this edge measured of its link and verifier (mode auto), apart for rounds that need
        #: whole rows (a verifier may score those at another cost) and plain greedy ones
        self.estimates = {whole: LinkEstimates() for whole in (False, True)}
        self.explorers = {whole: Explorer(settings.explore_every, settings.explore_rounds) for whole in (False, True)}
        self.recovery = RecoveryPolicy(settings.on_cloud_loss, settings.cloud_wait_s)

    async def loop(self, mode: Mode, gen: GenerationRequest, stats: GenerationStats,
                   stack: contextlib.AsyncExitStack) -> Loop:
        """The decoding loop of the request's mode; a drafter leased on ``stack`` for its lifetime
        if it needs one."""
        if mode == "draft":
            stats.took("draft", "mode draft")
            return draft_loop(gen, await stack.enter_async_context(self.drafters.lease()), stats)
        drafter: Drafter | None = None
        if mode != "cloud":
            drafter = await stack.enter_async_context(self.drafters.lease())
            if gen.prediction is not None:
                drafter = PredictionDrafter(drafter, gen.prediction, gen.generation.output_index())

        def cloud(req: GenerationRequest) -> Loop:
            ctx = LoopContext(self.channel, self.client, self.settings.proposal_support,
                              self.estimates[req.whole_rows], self.round_log, self.settings.round_timeout_s)
            if mode == "cloud" or drafter is None:
                stats.took("cloud", f"mode {mode}")
                return cloud_loop(req, ctx, stats)
            if mode == "speculative":
                stats.took("pipelined" if req.policy.draft_while_waiting else "stop_and_wait", "mode speculative")
                return speculative_loop(req, drafter, ctx, stats)
            return adaptive_loop(req, drafter, ctx, stats, self.explorers[req.whole_rows],
                                 shadow=self.settings.shadow_draft)

        async def alone(req: GenerationRequest) -> Loop | None:
            if not self.drafters.standalone:
                return None
            if drafter is not None:
                return draft_loop(req, drafter.inner if isinstance(drafter, PredictionDrafter) else drafter, stats)
            return draft_loop(req, await stack.enter_async_context(self.drafters.lease()), stats)

        return resumable(gen, cloud, alone, self.recovery, self.breaker, stats)
