"""An OpenAI request plus its prompt, resolved into one generation: limits, sampling, mode.

Every default and every refusal (context too long, a Tandem option this edge cannot honour)
is decided here, before any token is generated.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from proxy.decoding.pipeline import PipelinePolicy
from proxy.decoding.request import GenerationRequest
from proxy.draft.prediction import PredictionTrigger
from proxy.openai.errors import bad_request
from proxy.openai.schema import SamplingFields, TandemOptions
from proxy.openai.tools import ToolPlan
from proxy.rounds.trigger import DraftTrigger, DualThresholdTrigger, PredictorTrigger
from proxy.rounds.tuning import ThresholdTuner
from proxy.rounds.upload_plan import UploadPlanner
from proxy.settings import EdgeSettings, Mode
from verifier.core.grammar import Constraint, GrammarCompiler, GrammarError, GrammarSpec
from verifier.core.predictor import AcceptancePredictor
from verifier.core.protocol import (
    Generation,
    GrammarParams,
    SamplingParams,
    SloTargets,
    continuation_refusal,
    unverifiable,
)
from verifier.core.sampling import SEED_MASK, effective_temperature

_GOLDEN = 0x9E3779B97F4A7C15  # spreads the seeds of a request's choices apart


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of a request seeded ``seed``: choice 0 keeps it (n=1 and
    the first of n give the same output), the others get seeds of their own, reproducibly."""
    return (seed + index * _GOLDEN) & SEED_MASK


@dataclass(frozen=True)
class PreparedRequest:
    gen: GenerationRequest  # choice 0
    mode: Mode
    stop: list[str]
    tools: ToolPlan = field(default_factory=ToolPlan)  # what becomes of the output: text, or tool calls
    n: int = 1  # choices returned
    best_of: int = 1  # choices generated (completions: the n with the highest cumulative logprob are returned)
    show_logprobs: bool = False  # the client asked for logprobs (best_of computes them anyway)
    token_ids: bool = False  # the client asked for each choice's output token ids (return_token_ids)

    @property
    def generations(self) -> int:
        """Generations to run: one when every choice is the same greedy output."""
        return 1 if self.gen.generation.sampling.temperature == 0 else max(self.n, self.best_of)

    def choice(self, index: int) -> GenerationRequest:
        """Choice ``index``'s generation: its own seed, its own grammar state."""
        if index == 0:
            return self.gen
        sampling = self.gen.generation.sampling
        constraint = self.gen.constraint.copy() if self.gen.constraint is not None else None
        return replace(self.gen.with_generation(sampling=sampling.model_copy(update={"seed": choice_seed(sampling.seed,
                                                                                                         index)})),
                       constraint=constraint)


def mode_of(req: SamplingFields, settings: EdgeSettings) -> Mode:
    return req.tandem.mode if req.tandem and req.tandem.mode else settings.mode


def max_tokens_for(req: SamplingFields, prompt_tokens: int, context_limit: int, default_max: int | None) -> int:
    """The completion budget: the request's, else the endpoint default, else the room left.
    A request asking for more than the context holds is refused, as OpenAI does."""
    room = context_limit - prompt_tokens
    if room <= 0:
        raise bad_request(
            f"This model's maximum context length is {context_limit} tokens. However, your prompt is "
            f"{prompt_tokens} tokens long.", "messages", "context_length_exceeded")
    requested = req.token_limit()
    if requested is None:
        return min(default_max or room, room)
    if requested > room:
        raise bad_request(
            f"This model's maximum context length is {context_limit} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} for "
            f"the completion).", "max_tokens", "context_length_exceeded")
    return requested


@dataclass(frozen=True)
class EdgeDefaults:
    """What the edge brings to every request: its settings, the context it can hold, whether its
    drafter can answer alone, the tokens that end a turn, and its round trigger."""

    settings: EdgeSettings
    context_limit: int
    standalone: bool
    stop_token_ids: frozenset[int]
    trigger: DraftTrigger | None  # the default
    predictor: PredictorTrigger | None = None  # loaded from --predictor, for requests that ask for it
    verifies_sampled: bool = True  # the verifier checks sampled drafts (else: plain greedy ones only)
    vocab_size: int | None = None  # the token ids logit_bias may name (None: unchecked here)
    grammars: GrammarCompiler | None = None  # response_format's grammars over the edge's vocabulary
    tuner_for: Callable[[PipelinePolicy], ThresholdTuner] | None = None  # trigger 'tuned' (None: botorch missing)
    planner_for: Callable[[int], UploadPlanner] | None = None  # upload 'planned': the plan for a gamma
    rows_are_logits: bool = True  # the verifier's rows are logits (else log-probabilities: no repetition_penalty)
    continues_output: bool = True  # the verifier's own decoding continues any generation after output


def load_predictor(settings: EdgeSettings) -> PredictorTrigger | None:
    """The rejection predictor of --predictor, if one is configured (a model-free drafter has
    no logits to predict from)."""
    if not settings.predictor or settings.drafter != "llama":
        return None
    return PredictorTrigger(AcceptancePredictor.load(Path(settings.predictor)), settings.predictor_min_accept)


def build_trigger(settings: EdgeSettings, predictor: PredictorTrigger | None) -> DraftTrigger | None:
    """The edge's default round trigger, given its loaded predictor (None for a model-free
    drafter: its drafts carry no logits)."""
    if settings.drafter != "llama":
        return None
    if settings.trigger == "predictor":
        if predictor is None:
            raise ValueError("trigger 'predictor' needs --predictor (a file from `tandem-draft fit-predictor`)")
        return predictor
    return DualThresholdTrigger(settings.confidence_threshold, settings.cumulative_threshold)


def _trigger_for(opts: TandemOptions | None, edge: EdgeDefaults) -> DraftTrigger | None:
    """A request's own trigger choice (tandem.trigger, tandem.confidence_threshold), else the edge's."""
    if opts and opts.trigger == "predictor":
        if edge.predictor is None:
            raise bad_request("trigger 'predictor' needs an edge started with --predictor", "tandem.trigger",
                              "unsupported_parameter")
        return edge.predictor
    if opts and (opts.confidence_threshold is not None or opts.cumulative_threshold is not None
                 or opts.trigger == "confidence"):
        per_token, cumulative = opts.confidence_threshold, opts.cumulative_threshold
        return DualThresholdTrigger(edge.settings.confidence_threshold if per_token is None else per_token,
                                    edge.settings.cumulative_threshold if cumulative is None else cumulative)
    return edge.trigger


def tuned(opts: TandemOptions | None, settings: EdgeSettings) -> bool:
    """Whether a request's rounds are cut by the tuned thresholds: its own trigger choice, else
    the edge's unless the request set thresholds of its own."""
    if opts and opts.trigger:
        return opts.trigger == "tuned"
    if opts and (opts.confidence_threshold is not None or opts.cumulative_threshold is not None):
        return False
    return settings.trigger == "tuned"


def policy_for(opts: TandemOptions | None, settings: EdgeSettings, seeded_sample: bool) -> PipelinePolicy:
    """How a request's speculation runs: pipelined (the default) or stop-and-wait, gamma tokens a
    round. A seeded sample is reproducible only with fixed round boundaries (when pipelined, which
    position is drafted and which is drawn by the verifier depends on timing): it waits for each
    round unless the request chose ``tandem.pipeline`` itself."""
    gamma = opts.gamma if opts and opts.gamma is not None else settings.gamma
    if opts and opts.pipeline is not None:
        pipelined = opts.pipeline
    else:
        pipelined = settings.pipeline and not seeded_sample
    return PipelinePolicy.pipelined(gamma, settings.max_inflight) if pipelined else PipelinePolicy.stop_and_wait(gamma)


def predicted(gen: GenerationRequest, prediction_ids: list[int], longest: int) -> GenerationRequest:
    """A generation with a prediction (OpenAI Predicted Outputs): its tokens are drafts, in rounds
    of up to ``longest`` tokens (``PredictionTrigger``); the edge's own drafts keep their trigger
    and gamma (``check_prediction`` refused what cannot go with it)."""
    own = gen.policy.gamma
    if own == 0:
        return gen  # cloud-only decoding by the request's gamma: nothing is drafted
    size = max(own, longest)
    policy = PipelinePolicy.pipelined(size, gen.policy.max_inflight) if gen.policy.draft_while_waiting \
        else PipelinePolicy.stop_and_wait(size)
    return replace(gen, prediction=tuple(prediction_ids), policy=policy, tuning=None, upload=None,
                   trigger=PredictionTrigger(gen.trigger, own, size))


def check_prediction(req: SamplingFields) -> None:
    """A prediction is refused where OpenAI refuses it: with n > 1, and with tools (before the
    tools are planned)."""
    if req.prediction is None:
        return
    if (req.n or 1) > 1:
        raise bad_request("prediction cannot be combined with n greater than 1", "n", "invalid_request_error")
    if getattr(req, "tools", None):
        raise bad_request("prediction cannot be combined with tools (function calling)", "tools",
                          "invalid_request_error")


def constrained(schema: dict[str, Any], edge: EdgeDefaults) -> tuple[GrammarParams, Constraint]:
    """What a generation whose output must follow ``schema`` carries: the grammar the verifier
    compiles, and the edge's own constraint for its drafts (a 400 naming
    response_format when the engine cannot compile the schema)."""
    spec = GrammarSpec.json_schema(schema, sorted(edge.stop_token_ids))
    if edge.grammars is None:
        raise bad_request("response_format needs a grammar engine over this edge's vocabulary; this edge drafts "
                          f"with {edge.settings.drafter!r}", "response_format", "unsupported_parameter")
    try:
        constraint = edge.grammars.compile(spec)
    except GrammarError as exc:
        raise bad_request(f"response_format: the JSON schema cannot be enforced: {exc}", "response_format",
                          "invalid_response_format") from exc
    return GrammarParams.of(spec), constraint


def sampling_of(req: SamplingFields, temperature: float, edge: EdgeDefaults) -> SamplingParams:
    """The request's sampling, for the draft and the target alike: unset fields neutral, the seed
    drawn when the request has none, logit_bias keys parsed and checked against the vocabulary."""
    bias = {int(k): v for k, v in (req.logit_bias or {}).items()}
    if edge.vocab_size is not None and any(t >= edge.vocab_size for t in bias):
        raise bad_request(f"logit_bias names a token id outside the vocabulary (0..{edge.vocab_size - 1})",
                          "logit_bias", "invalid_logit_bias")
    return SamplingParams(
        temperature=temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=max(0, req.top_k or 0),
        min_p=req.min_p or 0.0,
        seed=(req.seed & SEED_MASK) if req.seed is not None else secrets.randbits(63),
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        repetition_penalty=1.0 if req.repetition_penalty is None else req.repetition_penalty,
        logit_bias=bias,
        min_tokens=req.min_tokens or 0,
        stop_token_ids=sorted(edge.stop_token_ids) if req.min_tokens else [],
    )


def resolve(req: SamplingFields, prompt_ids: list[int], edge: EdgeDefaults, default_max: int | None,
            tools: ToolPlan | None = None, prediction_ids: list[int] | None = None) -> PreparedRequest:
    """The generation a request asks for, with this edge's defaults filled in; ``tools``: the
    chat's tool plan (``proxy.openai.tools``); ``prediction_ids``: the request's prediction, tokenised."""
    mode = mode_of(req, edge.settings)
    _check_drafter(req.tandem, mode, edge)
    gen = _generation(req, prompt_ids, edge, default_max)
    tools = tools or ToolPlan()
    schema = _output_schema(req, tools, gen)
    if schema is not None:
        grammar, constraint = constrained(schema, edge)
        gen = replace(gen.with_generation(grammar=grammar), constraint=constraint)
    best_of = req.best_of_wanted()
    if best_of > 1 and mode == "draft":
        raise bad_request("best_of ranks choices by the target's logprobs, computed in the cloud; mode 'draft' "
                          "answers from the draft model alone", "best_of", "unsupported_parameter")
    if best_of > 1 and gen.generation.logprobs is None:
        gen = gen.with_generation(logprobs=0)  # ranking the choices needs their logprobs
    if prediction_ids is not None:
        gen = predicted(gen, prediction_ids, edge.settings.prediction_round)
    if mode == "draft" and gen.generation.logprobs is not None:
        raise bad_request("logprobs are the target's, computed in the cloud; mode 'draft' answers from the draft "
                          "model alone", "logprobs", "unsupported_parameter")
    if not edge.continues_output and continuation_refusal(gen.generation.sampling, gen.generation.grammar):
        gen = replace(gen, cloud_resumes=False)  # mode auto never hands it to the cloud mid-request
    return PreparedRequest(gen=gen, mode=_served_mode(mode, gen, req.tandem, edge), stop=req.stop_list(),
                           tools=tools, n=req.n or 1, best_of=best_of,
                           show_logprobs=req.logprobs_wanted() is not None, token_ids=bool(req.return_token_ids))


def _check_drafter(opts: TandemOptions | None, mode: Mode, edge: EdgeDefaults) -> None:
    """Refuse what needs a draft model's output or probabilities on an edge without one."""
    drafter = edge.settings.drafter
    if mode == "draft" and not edge.standalone:
        raise bad_request(f"mode 'draft' needs a draft model; this edge drafts with {drafter!r}",
                          "tandem.mode", "unsupported_mode")
    if opts and (opts.confidence_threshold or opts.cumulative_threshold) and not edge.standalone:
        raise bad_request(f"confidence_threshold needs a draft model's probabilities; this edge drafts with "
                          f"{drafter!r}", "tandem.confidence_threshold", "unsupported_parameter")
    if opts and opts.trigger and not edge.standalone:
        raise bad_request(f"a trigger needs a draft model's probabilities; this edge drafts with "
                          f"{drafter!r}", "tandem.trigger", "unsupported_parameter")


def _generation(req: SamplingFields, prompt_ids: list[int], edge: EdgeDefaults,
                default_max: int | None) -> GenerationRequest:
    """The request's generation before its output constraints: budget, sampling, trigger and
    pipeline, the tuner and the upload plan it runs by, its latency targets and logprobs."""
    settings, opts = edge.settings, req.tandem
    trigger = _trigger_for(opts, edge)
    temperature = 1.0 if req.temperature is None else effective_temperature(req.temperature)
    seeded_sample = temperature > 0 and req.seed is not None
    policy = policy_for(opts, settings, seeded_sample)
    tuning = None
    if edge.standalone and tuned(opts, settings):
        if edge.tuner_for is None:
            raise bad_request("trigger 'tuned' needs botorch on the edge (pip install 'tandem[tune]')",
                              "tandem.trigger", "unsupported_parameter")
        tuning = edge.tuner_for(policy)
    planned = (opts.upload if opts and opts.upload else settings.upload) == "planned"
    generation = Generation(prompt_token_ids=prompt_ids, sampling=sampling_of(req, temperature, edge),
                            slo=SloTargets.given(opts.tpot_slo_ms, opts.ttft_slo_ms) if opts else None,
                            logprobs=req.logprobs_wanted())
    return GenerationRequest(
        generation,
        reproducible=seeded_sample,
        max_tokens=max_tokens_for(req, len(prompt_ids), edge.context_limit, default_max),
        stop_token_ids=edge.stop_token_ids,
        policy=policy,
        trigger=trigger,
        tuning=tuning,
        upload=edge.planner_for(policy.gamma) if planned and edge.planner_for and policy.gamma > 0 else None,
    )


def _output_schema(req: SamplingFields, tools: ToolPlan, gen: GenerationRequest) -> dict[str, Any] | None:
    """The JSON schema the output must follow: response_format's, or a forced tool call's (not both)."""
    schema = req.output_schema()
    forced = tools.output_schema()
    if forced is not None and schema is not None:
        raise bad_request("response_format and a forced tool_choice both constrain the output; send one of them",
                          "response_format", "conflicting_parameters")
    schema = forced if forced is not None else schema
    if schema is not None and gen.generation.sampling.min_tokens:
        raise bad_request("min_tokens cannot be combined with response_format or a forced tool_choice: once the "
                          "output is complete the grammar allows only its end, which min_tokens forbids",
                          "min_tokens", "conflicting_parameters")
    return schema


def _served_mode(mode: Mode, gen: GenerationRequest, opts: TandemOptions | None, edge: EdgeDefaults) -> Mode:
    """The mode that serves the generation: cloud where this verifier cannot check its drafts (a
    refusal when the request chose 'speculative' itself); speculative for a seeded sample in
    mode auto (one reproducible path: the cloud's own sampling draws differently)."""
    g = gen.generation
    refused = unverifiable(g.sampling, g.logprobs, g.grammar, verifies_sampled=edge.verifies_sampled,
                           rows_are_logits=edge.rows_are_logits)
    if mode in ("auto", "speculative") and refused is not None:
        if opts and opts.mode == "speculative":
            raise bad_request(f"this verifier cannot check the drafts of this request: {refused.why}; use mode "
                              "'cloud' (the verifier's own decoding serves it), or a verifier with full "
                              "distributions (--backend torch)", refused.param, refused.code)
        return "cloud"  # the lossless way this verifier offers: its own decoding, streamed
    if mode == "auto" and gen.reproducible:
        return "speculative"  # one reproducible path: the cloud's own sampling draws differently
    return mode
