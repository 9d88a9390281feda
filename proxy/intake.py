"""The edge's intake: an OpenAI request in, one resolved ``PreparedRequest`` out (raises
``OpenAIError``). It checks the model and the fields, bounds the prompt by the context both
sides can hold, builds the prompt (``openai.prompting``, ``openai.tools``) and resolves the
sampling and speculation settings (``openai.resolve``) with what the verifier says of itself
(``cloud.probe``). ``RoundPlans`` holds the tuners and upload plans requests share.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from dataclasses import replace

from proxy.cloud.breaker import CircuitBreaker
from proxy.cloud.probe import VerifierProbe
from proxy.decoding.pipeline import PipelinePolicy
from proxy.openai.errors import OpenAIError, bad_request
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
from proxy.rounds.tuning import ThresholdTuner
from proxy.rounds.upload_plan import UploadPlanner
from proxy.settings import EdgeSettings
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


class RequestIntake:
    """Validates and resolves the edge's requests (``prepare``)."""

    def __init__(self, settings: EdgeSettings, tokenizer: Tokenizer, standalone: bool, verifier: VerifierProbe,
                 breaker: CircuitBreaker) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        self.verifier = verifier
        self.breaker = breaker
        self.prompts = PromptBuilder(tokenizer)
        predictor = load_predictor(settings)
        self.plans = RoundPlans(settings)
        if settings.trigger == "tuned":
            if not self.plans.can_tune:
                raise ValueError("trigger 'tuned' needs botorch (pip install 'tandem[tune]')")
            self.plans.tuner_for(policy_for(None, settings, seeded_sample=False))  # its imports paid at start-up
        self.longest_piece = max(1, max(len(tokenizer.piece(t)) for t in range(tokenizer.vocab_size)))
        self.ignored_seen: set[str] = set()  # unknown request fields logged so far
        #: what the edge brings to every request; what the verifier tells of itself is filled in per request
        self.defaults = EdgeDefaults(
            settings=settings,
            context_limit=settings.n_ctx,
            standalone=standalone,
            stop_token_ids=tokenizer.stop_token_ids,
            trigger=build_trigger(settings, predictor),
            predictor=predictor,
            vocab_size=tokenizer.vocab_size,
            grammars=GrammarCompiler(tokenizer.grammar_tokenizer),  # response_format, over the edge's vocabulary
            tuner_for=self.plans.tuner_for if self.plans.can_tune else None,
            planner_for=self.plans.planner_for,
        )

    def check_model(self, model: str) -> None:
        if model != self.settings.served_model_name:
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
        verifier = self.verifier
        edge = replace(self.defaults, context_limit=self.context_limit(), verifies_sampled=verifier.verifies_sampled,
                       rows_are_logits=verifier.rows_are_logits, continues_output=verifier.continues_output)
        return resolve(req, prompt_ids, edge, default_max, tools, prediction)
