"""The edge's serving object: one prepared request in, text events out.

It picks the decoding loop for the request's mode, leases a drafter, feeds committed tokens
to a ``TextEmitter`` and maps verifier failures to OpenAI errors. Prompt building
(``openai.prompting``), request resolution (``openai.resolve``), the verifier probe (``cloud.probe``) and
the drafter pool (``draft.pool``) are modules of their own; routes in ``app`` only translate
to HTTP/SSE.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import replace

from proxy.cloud.breaker import CircuitBreaker
from proxy.cloud.channel import VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.cloud.probe import VerifierProbe
from proxy.decoding.adaptive import adaptive_loop
from proxy.decoding.alone import cloud_loop, draft_loop
from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.decoding.resume import Loop, RecoveryPolicy, resumable
from proxy.decoding.speculative import speculative_loop
from proxy.draft.base import Drafter
from proxy.draft.pool import DrafterPool, PoolFull
from proxy.draft.prediction import PredictionCounts, PredictionDrafter
from proxy.metrics import EdgeMetrics
from proxy.openai.errors import OpenAIError, bad_request, verifier_unavailable
from proxy.openai.output import Event, Finished, TextDelta, TextEmitter, TokenEntry
from proxy.openai.prompting import PromptBuilder
from proxy.openai.resolve import (
    EdgeDefaults,
    PreparedRequest,
    build_trigger,
    check_prediction,
    load_predictor,
    mode_of,
    policy_for,
    resolve,
)
from proxy.openai.schema import ChatCompletionRequest, CompletionRequest, SamplingFields
from proxy.openai.tools import ToolPlan, plan_tools
from proxy.rounds.rates import Explorer, LinkEstimates
from proxy.rounds.round_log import RoundLog
from proxy.rounds.tuning import ThresholdTuner
from proxy.rounds.upload_plan import UploadPlanner
from proxy.settings import EdgeSettings, Mode
from proxy.tokenizer import Tokenizer
from verifier.core.grammar import GrammarCompiler

log = logging.getLogger(__name__)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint


class RoundPlans:
    """The tuners and upload plans the edge's requests share: a tuner of the dual threshold per
    pipeline policy (trigger 'tuned'), an upload plan per gamma (upload 'planned')."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.tuners: dict[tuple[int, int, bool], ThresholdTuner] = {}
        self.planners: dict[int, UploadPlanner] = {}
        self.can_tune = importlib.util.find_spec("botorch") is not None
        self._lock = threading.Lock()  # requests are resolved in worker threads

    def tuner_for(self, policy: PipelinePolicy) -> ThresholdTuner:
        """The tuner of the dual threshold for requests run by ``policy`` (each policy has its own
        best thresholds, and its own measurements)."""
        key = (policy.gamma, policy.max_inflight, policy.draft_while_waiting)
        with self._lock:
            if key not in self.tuners:
                tuner = ThresholdTuner(start=(self.settings.confidence_threshold, self.settings.cumulative_threshold),
                                       segment_tokens=self.settings.tune_segment_tokens)
                tuner.search.prepare()  # the first such request waits for the imports, not a later search
                self.tuners[key] = tuner
            return self.tuners[key]

    def planner_for(self, gamma: int) -> UploadPlanner:
        """The upload plan of windows of ``gamma`` tokens (its cost fit shared by the requests)."""
        with self._lock:
            if gamma not in self.planners:
                self.planners[gamma] = UploadPlanner(window=gamma)
            return self.planners[gamma]


class EdgeService:
    def __init__(self, settings: EdgeSettings, tokenizer: Tokenizer, drafters: DrafterPool,
                 client: VerifierClient, channel: VerifierChannel) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.client = client
        self.channel = channel
        self.drafters = drafters
        self.prompts = PromptBuilder(tokenizer)
        self.verifier = VerifierProbe(client, tokenizer.vocab_size)
        predictor = load_predictor(settings)
        trigger = build_trigger(settings, predictor)
        self.plans = RoundPlans(settings)
        if settings.trigger == "tuned":
            if not self.plans.can_tune:
                raise ValueError("trigger 'tuned' needs botorch (pip install 'tandem[tune]')")
            self.plans.tuner_for(policy_for(None, settings, seeded_sample=False))  # its imports paid at start-up
        self.round_log = RoundLog(settings.round_log) if settings.round_log else None
        #: what this edge measured of its link and verifier (mode auto), apart for rounds that need
        #: whole rows (a verifier may score those at another cost) and plain greedy ones
        self.estimates = {whole: LinkEstimates() for whole in (False, True)}
        self.explorers = {whole: Explorer(settings.explore_every, settings.explore_rounds) for whole in (False, True)}
        self.recovery = RecoveryPolicy(settings.on_cloud_loss, settings.cloud_wait_s)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.longest_piece = max(1, max(len(tokenizer.piece(t)) for t in range(tokenizer.vocab_size)))
        self.ignored_seen: set[str] = set()  # unknown request fields logged so far
        #: what the edge brings to every request; what the verifier tells of itself is filled in per request
        self.defaults = EdgeDefaults(
            settings=settings,
            context_limit=settings.n_ctx,
            standalone=drafters.standalone,
            stop_token_ids=tokenizer.stop_token_ids,
            trigger=trigger,
            predictor=predictor,
            vocab_size=tokenizer.vocab_size,
            grammars=GrammarCompiler(tokenizer.grammar_tokenizer),  # response_format, over the edge's vocabulary
            tuner_for=self.plans.tuner_for if self.plans.can_tune else None,
            planner_for=self.plans.planner_for,
        )
        self.metrics = EdgeMetrics(drafters)
        self.created = int(time.time())

    @property
    def model_id(self) -> str:
        return self.settings.served_model_name

    def check_model(self, model: str) -> None:
        if model != self.model_id:
            raise OpenAIError(404, f"The model `{model}` does not exist.", "invalid_request_error", "model",
                              "model_not_found")

    def context_limit(self) -> int:
        limit = self.settings.n_ctx
        if self.verifier.max_context:
            limit = min(limit, self.verifier.max_context)
        return limit

    async def prepare(self, req: ChatCompletionRequest | CompletionRequest) -> PreparedRequest:
        """Validate a request and resolve it into one generation (raises OpenAIError)."""
        self.check_model(req.model)
        self._check_fields(req)
        if mode_of(req, self.settings) != "draft" and self.breaker.state(time.monotonic()) == "closed":
            await self.verifier.ensure_known()
        chars = sum(len(m.text()) for m in req.messages) if isinstance(req, ChatCompletionRequest) \
            else len(req.prompt_text())
        limit = self.context_limit()
        if chars > limit * self.longest_piece:  # cannot fit whatever the tokens: refused before templating
            raise bad_request(f"This model's maximum context length is {limit} tokens; your prompt has {chars} "
                              f"characters, more than {limit} tokens can hold.",
                              "messages" if isinstance(req, ChatCompletionRequest) else "prompt",
                              "context_length_exceeded")
        # templating and tokenising a long prompt, compiling a schema: CPU work, off the event loop
        return await asyncio.to_thread(self._prepare_sync, req)

    def _prepare_sync(self, req: ChatCompletionRequest | CompletionRequest) -> PreparedRequest:
        check_prediction(req)
        if isinstance(req, ChatCompletionRequest):
            template = self.prompts.template
            plan = plan_tools(req, template.supports_tools, template.name)
            return self._resolve(req, self.prompts.chat(req, plan), None, plan)
        return self._resolve(req, self.prompts.text(req), COMPLETIONS_DEFAULT_MAX_TOKENS)

    def _check_fields(self, req: ChatCompletionRequest | CompletionRequest) -> None:
        """Unknown fields: a 400 with --strict-fields, else accepted and logged once per name."""
        ignored = req.ignored_fields()
        if ignored and self.settings.strict_fields:
            raise bad_request(f"Unrecognized request argument supplied: {ignored[0]}", ignored[0],
                              "unsupported_parameter")
        for name in ignored:
            if name not in self.ignored_seen:
                self.ignored_seen.add(name)
                log.info("unknown request field ignored (reported in the x-tandem-ignored-fields header)",
                         extra={"field": name})

    def _resolve(self, req: SamplingFields, prompt_ids: list[int], default_max: int | None,
                 tools: ToolPlan | None = None) -> PreparedRequest:
        prediction = self.tokenizer.encode(req.prediction.text(), special=False, add_bos=False) \
            if req.prediction is not None else None
        edge = replace(self.defaults, context_limit=self.context_limit(),
                       verifies_sampled=self.verifier.verifies_sampled, rows_are_logits=self.verifier.rows_are_logits)
        return resolve(req, prompt_ids, edge, default_max, tools, prediction)

    async def generate(self, prep: PreparedRequest) -> AsyncGenerator[Event, None]:
        """Text deltas then one Finished, per choice (``index``). Raises OpenAIError for failures.

        n > 1 runs the choices concurrently (one generation each, seeds of their own), except when
        greedy: every choice is then the same output, generated once. best_of > n generates
        best_of choices and returns the n with the highest cumulative logprob, renumbered."""
        if prep.generations == 1:
            async for ev in self._generate_one(prep, prep.gen):
                for index in range(prep.n):
                    yield replace(ev, index=index)
            return
        runs = [self._generate_one(prep, prep.choice(i), i) for i in range(prep.generations)]
        if prep.best_of <= prep.n:
            async for ev in merged(runs):
                yield ev
            return
        events: list[list[Event]] = [[] for _ in runs]
        async for ev in merged(runs):
            events[ev.index].append(ev)
        ranked = sorted(range(len(runs)), key=lambda i: (-cumulative_logprob(events[i]), i))[: prep.n]
        for index, chosen in enumerate(ranked):
            for ev in events[chosen]:
                yield replace(ev, index=index)

    async def _generate_one(self, prep: PreparedRequest, gen: GenerationRequest,
                            index: int = 0) -> AsyncGenerator[Event, None]:
        """One choice: text deltas then one Finished."""
        stats = GenerationStats(mode=prep.mode, logprobs=[] if gen.logprobs is not None else None)
        emitter = TextEmitter(self.tokenizer, gen.max_tokens, gen.stop_token_ids, prep.stop)
        pending: list[TokenEntry] = []  # logprobs of output tokens whose text is still held back
        cumulative: float | None = 0.0 if stats.logprobs is not None else None  # None once a token has none
        # the tokens ``emitter.produced`` counts: returned when asked, and a prediction's usage counts them
        output_ids: list[int] | None = [] if prep.token_ids or gen.prediction is not None else None
        t0 = time.perf_counter()
        ttft: float | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                tokens = await self._loop(prep.mode, gen, stats, stack)
                stack.push_async_callback(tokens.aclose)
                consumed = 0
                async for new in tokens:
                    for token in new:
                        text, is_output = emitter.push_one(token)
                        if output_ids is not None and len(output_ids) < emitter.produced:
                            output_ids.append(token)
                        if is_output and stats.logprobs is not None:
                            entry = stats.logprobs[consumed]
                            pending.append((token, entry))
                            cumulative = cumulative + entry.logprob if entry and cumulative is not None else None
                        consumed += 1
                        if text:
                            ttft = time.perf_counter() - t0 if ttft is None else ttft
                            yield TextDelta(text, stats.degraded, tuple(pending), index)
                            pending.clear()
                        if emitter.done:
                            break
                    if emitter.done:
                        break
        except Exception as exc:
            self.metrics.failed(prep.mode)
            if (error := openai_error_of(exc)) is None:
                raise
            raise error from exc
        tail = emitter.finish()
        if tail:  # held-back text; the logprobs of tokens that end in no text (a stop string) are dropped
            yield TextDelta(tail, stats.degraded, tuple(pending), index)
        out = stats.as_dict()
        if gen.prediction is not None and output_ids is not None:
            counts = PredictionCounts.of(gen.prediction, output_ids)
            out["accepted_prediction_tokens"], out["rejected_prediction_tokens"] = counts.accepted, counts.rejected
        elapsed = time.perf_counter() - t0
        out["elapsed_ms"] = round(elapsed * 1000, 2)
        self.metrics.finished(out, emitter.finish_reason, emitter.produced,
                              ttft if ttft is not None else (elapsed if tail else None), elapsed)
        log.info("request finished", extra={"tokens": emitter.produced, "reason": emitter.finish_reason, **out})
        yield Finished(emitter.finish_reason, len(gen.prompt_token_ids), emitter.produced, out, index, cumulative,
                       tuple(output_ids) if output_ids is not None and prep.token_ids else None)

    async def prompt_entries(self, prep: PreparedRequest, top_logprobs: int) -> list[TokenEntry]:
        """The target's logprobs of the prompt's tokens (completions' echo with logprobs); the first
        token has none."""
        ids = prep.gen.prompt_token_ids
        try:
            scored = await self.client.prompt_logprobs(ids, top_logprobs)
        except Exception as exc:
            if (error := openai_error_of(exc)) is None:
                raise
            raise error from exc
        return [(ids[0], None), *zip(ids[1:], scored, strict=True)]

    async def _loop(self, mode: Mode, gen: GenerationRequest, stats: GenerationStats,
                    stack: contextlib.AsyncExitStack) -> Loop:
        """The decoding loop of the request's mode, resumed or continued on the draft model when
        the verifier is lost (``proxy.decoding.resume``); a drafter leased for its lifetime if it needs one."""
        if mode == "draft":
            stats.took("draft", "mode draft")
            return draft_loop(gen, await stack.enter_async_context(self.drafters.lease()), stats)
        drafter: Drafter | None = None
        if mode != "cloud":
            drafter = await stack.enter_async_context(self.drafters.lease())
            if gen.prediction is not None:
                drafter = PredictionDrafter(drafter, gen.prediction, gen.output_index())

        def cloud(req: GenerationRequest) -> Loop:
            estimates = self.estimates[req.whole_rows]
            if mode == "cloud" or drafter is None:
                stats.took("cloud", f"mode {mode}")
                return cloud_loop(req, self.client, stats, estimates)
            if mode == "speculative":
                stats.took("pipelined" if req.policy.draft_while_waiting else "stop_and_wait", "mode speculative")
                return speculative_loop(req, drafter, self.channel, stats, self.settings.proposal_support,
                                        self.round_log, estimates, self.settings.round_timeout_s)
            return adaptive_loop(req, drafter, self.channel, self.client, stats, self.settings.proposal_support,
                                 estimates, self.explorers[req.whole_rows], self.round_log,
                                 self.settings.round_timeout_s, shadow=self.settings.shadow_draft)

        async def alone(req: GenerationRequest) -> Loop | None:
            if not self.drafters.standalone:
                return None
            if drafter is not None:
                return draft_loop(req, drafter.inner if isinstance(drafter, PredictionDrafter) else drafter, stats)
            return draft_loop(req, await stack.enter_async_context(self.drafters.lease()), stats)

        return resumable(gen, cloud, alone, self.recovery, self.breaker, stats)


def cumulative_logprob(events: list[Event]) -> float:
    """A finished choice's cumulative target logprob (-inf when unknown: it ranks last)."""
    for ev in events:
        if isinstance(ev, Finished) and ev.cumulative_logprob is not None:
            return ev.cumulative_logprob
    return -math.inf


async def merged(runs: list[AsyncGenerator[Event, None]]) -> AsyncGenerator[Event, None]:
    """The events of concurrent choices as they come, each stamped with its choice's index; the
    first failure of any choice ends them all. Closing the merge closes every choice."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, run: AsyncGenerator[Event, None]) -> None:
        try:
            async for ev in run:
                await queue.put((index, replace(ev, index=index)))
            await queue.put((index, None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put((index, exc))

    tasks = [asyncio.get_running_loop().create_task(pump(i, run)) for i, run in enumerate(runs)]
    try:
        left = len(runs)
        while left:
            _, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run in runs:
            await run.aclose()


def openai_error_of(exc: Exception) -> OpenAIError | None:
    """A full drafter pool or a verifier failure as the client sees it; None for anything else."""
    if isinstance(exc, PoolFull):
        return OpenAIError(429, f"The edge is at capacity: {exc}. Retry shortly.", "rate_limit_error", None,
                           "too_many_requests", retry_after_s=1.0)
    if isinstance(exc, VerifierUnavailable):
        return verifier_unavailable(str(exc))
    if not isinstance(exc, VerifierRejected):
        return None
    if exc.code == "unsupported_sampling":
        return OpenAIError(400, str(exc), "invalid_request_error", "temperature", exc.code)
    if exc.code in ("unsupported_grammar", "invalid_grammar"):
        return OpenAIError(400, str(exc), "invalid_request_error", "response_format", exc.code)
    if exc.status == 429:
        return OpenAIError(429, f"the verifier's quota for this edge is used up: {exc}", "rate_limit_error", None,
                           exc.code, retry_after_s=1.0)
    return OpenAIError(502, f"verifier refused the request: {exc}", "server_error", None, "verifier_error")
