"""The verify API's JSON side: server info, cloud-only generation, session parameters.

Together with the frames of ``verifier.core.wire`` (sessions and rounds on the persistent
channel) the only contract between an edge and the cloud verifier, one protocol version for
both. Documented in docs/verify-api.md; words as defined in docs/architecture.md#glossary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from verifier.core.grammar import GrammarKind, GrammarSpec
from verifier.core.logits import LogitsProcessing
from verifier.core.logprobs import MAX_TOP_LOGPROBS, TokenLogprob
from verifier.core.sampling import effective_temperature
from verifier.core.wire import PROTOCOL_VERSION

API_PREFIX = "/v1"
#: the WebSocket route of the channel (sessions and rounds, ``verifier.core.wire``)
CHANNEL_PATH = f"{API_PREFIX}/channel"
#: logit_bias entries of one request (OpenAI allows 300)
MAX_LOGIT_BIAS = 300


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingParams(_Strict):
    """How the target distribution is formed. temperature 0 means greedy. The penalties,
    ``logit_bias`` and ``min_tokens`` are ``verifier.core.logits.LogitsProcessing``; ``top_k``
    and ``min_p`` truncate like ``top_p`` (``verifier.core.sampling.target_distribution``)."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="below 1e-5: greedy (0)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0: off")
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, description="keys all randomness of the session")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    logit_bias: dict[int, float] = Field(default_factory=dict, max_length=MAX_LOGIT_BIAS)
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: list[int] = Field(default_factory=list, max_length=64,
                                      description="the tokens min_tokens holds back")

    @field_validator("temperature")
    @classmethod
    def _greedy_below_floor(cls, v: float) -> float:
        return effective_temperature(v)

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, v: dict[int, float]) -> dict[int, float]:
        if any(not -100.0 <= b <= 100.0 for b in v.values()):
            raise ValueError("logit_bias values must be between -100 and 100")
        return v

    def processing(self) -> LogitsProcessing:
        return LogitsProcessing(self.presence_penalty, self.frequency_penalty, self.repetition_penalty,
                                dict(self.logit_bias), self.min_tokens, frozenset(self.stop_token_ids))

    def token_ids_named(self) -> list[int]:
        """Every token id the parameters name (checked against the vocabulary by the verifier)."""
        return [*self.logit_bias, *self.stop_token_ids]

    @property
    def shapes_logits(self) -> bool:
        """Whether anything besides temperature/top_p acts on the logits (a backend that scores
        only each row's top entries cannot verify such a session exactly)."""
        return self.processing().active or self.top_k > 0 or self.min_p > 0


class SloTargets(_Strict):
    """Latency targets of one generation; unset fields take the verifier's defaults.

    tpot_ms: time per output token; a round's deadline is its arrival plus tpot_ms for every
    token it is expected to commit. ttft_ms: time to first token, the prefill's deadline."""

    tpot_ms: float | None = Field(None, gt=0, le=600_000)
    ttft_ms: float | None = Field(None, gt=0, le=600_000)

    @classmethod
    def given(cls, tpot_ms: float | None, ttft_ms: float | None) -> SloTargets | None:
        """The targets a request set; None where it set neither (the verifier's defaults apply,
        ``verifier.engine.state.LatencyTargets``). The edge (a request's ``tandem`` options) and
        the verifier (an ``Open`` frame) both read a request's SLO by this one rule."""
        return cls(tpot_ms=tpot_ms, ttft_ms=ttft_ms) if tpot_ms is not None or ttft_ms is not None else None


class GrammarParams(_Strict):
    """``verifier.core.grammar.GrammarSpec`` in JSON."""

    kind: GrammarKind
    text: str = Field(max_length=1 << 20)
    stop_token_ids: list[int] = Field(max_length=64)

    def spec(self) -> GrammarSpec:
        return GrammarSpec(self.kind, self.text, tuple(self.stop_token_ids))

    @classmethod
    def of(cls, spec: GrammarSpec) -> GrammarParams:
        return cls(kind=spec.kind, text=spec.text, stop_token_ids=list(spec.stop_token_ids))


def whole_rows_reasons(sampling: SamplingParams, logprobs: int | None,
                       grammar: GrammarParams | None) -> list[tuple[str, str]]:
    """Why a generation's verify rounds need the target's whole distributions, as (what, error
    code) pairs; none for plain greedy rounds, which need each row's top entry only. The edge
    and the verifier decide by this one rule (a verifier may score whole rows at another cost)."""
    needs = [(sampling.temperature > 0, f"sampling (temperature {sampling.temperature})", "unsupported_sampling"),
             (sampling.shapes_logits, "penalties, logit_bias, min_tokens, top_k or min_p", "unsupported_sampling"),
             (logprobs is not None, "logprobs", "unsupported_sampling"),
             (grammar is not None, "a grammar (response_format, tool_choice)", "unsupported_grammar")]
    return [(what, code) for needed, what, code in needs if needed]


def continuation_refusal(sampling: SamplingParams, grammar: GrammarParams | None) -> str | None:
    """Why a backend whose own decoding sees the tokens before it as prompt only (vLLM's) cannot
    continue a generation after some output exactly (None: it can): presence/frequency
    penalties count the output, and a grammar starts at the first output token. The backend
    refuses such a continuation, and an edge never hands one to it (``ModelInfo.continues_output``)."""
    if sampling.presence_penalty or sampling.frequency_penalty:
        return "presence/frequency penalties count the output, which this backend's own decoding would see as prompt"
    if grammar is not None:
        return "a grammar starts at the first output token, which this backend's own decoding would see as prompt"
    return None


@dataclass(frozen=True)
class Unverifiable:
    """Why a verifier cannot check a generation's drafts: ``why`` reads after "this verifier
    cannot check its drafts: "; ``param`` is the request field to blame (None: several)."""

    why: str
    param: str | None
    code: str


def unverifiable(sampling: SamplingParams, logprobs: int | None, grammar: GrammarParams | None, *,
                 verifies_sampled: bool, rows_are_logits: bool,
                 reasons: Sequence[tuple[str, str]] | None = None) -> Unverifiable | None:
    """Why a verifier whose rows are as described cannot check this generation's drafts (None:
    it can). The one rule the edge (which then streams from the cloud, or refuses mode
    'speculative') and the verifier (which refuses the session) both apply. ``reasons``: the
    generation's ``whole_rows_reasons`` where the caller has them already (None: worked out here)."""
    if sampling.repetition_penalty != 1.0 and not rows_are_logits:
        return Unverifiable("its rows are log-probabilities, not logits, and repetition_penalty scales a logit by "
                            "its sign", "repetition_penalty", "unsupported_sampling")
    short = whole_rows_reasons(sampling, logprobs, grammar) if reasons is None else reasons
    if short and not verifies_sampled:
        what, code = short[0]
        return Unverifiable(f"it checks plain greedy drafts only, and {what} needs full distributions",
                            "temperature" if sampling.temperature > 0 else None, code)
    return None


class Generation(_Strict):
    """The one generation-request object an edge sends: what a session (``SessionCreate``, over
    the channel's ``Open`` frame) and a cloud-only generation (``GenerateRequest``) share, the
    sequence, its sampling, its SLO, its logprobs and grammar."""

    protocol_version: int = PROTOCOL_VERSION
    prompt_token_ids: list[int] = Field(min_length=1)
    sampling: SamplingParams = SamplingParams()
    slo: SloTargets | None = None
    output_start: int | None = Field(
        None, ge=1, description="where the output begins in prompt_token_ids (None: after them all): a generation "
        "resumed or handed over continues from the tokens it produced, which still count as output (penalties, "
        "min_tokens)")

    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description=(
        "report the target's logprob of every output token with this many top alternatives (None: none)"))
    grammar: GrammarParams | None = Field(None, description="what the output must match (constrained decoding)")

    @model_validator(mode="after")
    def _output_start_inside(self) -> Generation:
        if self.output_start is not None and self.output_start > len(self.prompt_token_ids):
            raise ValueError("output_start lies beyond prompt_token_ids")
        return self

    def output_index(self) -> int:
        return len(self.prompt_token_ids) if self.output_start is None else self.output_start

    def shared(self) -> dict[str, object]:
        """Its ``Generation`` fields only (a subclass's own left out), to build another from."""
        return {name: getattr(self, name) for name in Generation.model_fields}


class SessionCreate(Generation):
    """A session's parameters (from the channel's ``Open`` frame), validated."""

    reproducible: bool = Field(False, description=(
        "a seeded sampled generation: its output must repeat for the same seed, so the verifier keeps its own "
        "position-keyed draws (the whole-row route) rather than a live route's"))

    @classmethod
    def of(cls, gen: Generation, reproducible: bool = False) -> SessionCreate:
        return cls.model_validate({**gen.shared(), "reproducible": reproducible})


class SessionCreated(_Strict):
    """What ``VerifierEngine.create_session`` returns, in process (no wire message: an ``Open``
    frame gets no answer)."""

    session_id: str
    route: str = Field("rows", description="which route scores its rounds: live (inside the backend's own engine, "
                       "at about a decode step) or rows (the target's rows, scored by Tandem)")
    route_note: str | None = Field(None, description="why the session is not live, where the backend has a live route")


class GenerateRequest(Generation):
    """Cloud-only decoding: the target generates alone and streams token ids back."""

    max_tokens: int = Field(ge=1)
    stop_token_ids: list[int] = Field(default_factory=list)

    @classmethod
    def of(cls, gen: Generation, max_tokens: int, stop_token_ids: list[int]) -> GenerateRequest:
        return cls.model_validate({**gen.shared(), "max_tokens": max_tokens, "stop_token_ids": stop_token_ids})


class TokenLogprobs(_Strict):
    """``verifier.core.logprobs.TokenLogprob`` in JSON."""

    token_id: int
    logprob: float
    top_ids: list[int] = Field(default_factory=list)
    top_logprobs: list[float] = Field(default_factory=list)

    @classmethod
    def of(cls, t: TokenLogprob) -> TokenLogprobs:
        return cls(token_id=t.token_id, logprob=t.logprob, top_ids=[i for i, _ in t.top],
                   top_logprobs=[lp for _, lp in t.top])

    def parsed(self) -> TokenLogprob:
        return TokenLogprob(self.token_id, self.logprob, tuple(zip(self.top_ids, self.top_logprobs)))


class PromptLogprobsRequest(_Strict):
    """``POST /v1/prompt_logprobs``: the target's logprobs of a prompt's tokens (completions' echo)."""

    protocol_version: int = PROTOCOL_VERSION
    prompt_token_ids: list[int] = Field(min_length=1)
    top_logprobs: int = Field(0, ge=0, le=MAX_TOP_LOGPROBS)


class PromptLogprobs(_Strict):
    """One entry per prompt token after the first (the first has no context to be scored in)."""

    logprobs: list[TokenLogprobs]
    compute_ms: float


class GeneratedTokens(_Strict):
    """One NDJSON line of a generate stream."""

    token_ids: list[int]
    compute_ms: float = Field(description="the verifier's model time for these tokens")
    logprobs: list[TokenLogprobs] | None = Field(None, description="one per token, when the request asked")


class EngineLayout(_Strict):
    """A vLLM engine's parallel layout and the settings that shape it (``/v1/info``'s ``engine``)."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    nodes: int = Field(1, description="vLLM's nnodes: the nodes the workers span")
    executor: str | None = Field(None, description="vLLM's distributed executor (mp, ray, uni)")
    dtype: str
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    block_size: int
    max_model_len: int
    max_num_seqs: int
    enforce_eager: bool = Field(description="no CUDA graphs / torch.compile")
    engine_args: dict[str, JsonValue] = Field(
        default_factory=dict, description="the operator's --vllm-engine-args, as given"
    )


class ModelInfo(_Strict):
    """What a backend serves: the model and the limits an edge must respect."""

    model: str
    backend: str
    vocab_size: int
    max_context: int
    eos_token_ids: list[int]
    verifies_sampled: bool = Field(
        True, description="whether sampled (temperature > 0) drafts can be verified; if not, only greedy ones"
    )
    rows_are_logits: bool = Field(
        True, description="whether the scored rows are the logits themselves; if not, they are the logits up to a "
        "constant per row (log-probabilities), and repetition_penalty, which scales a logit by its sign, cannot "
        "be applied to them (speculative sessions asking for it are refused)"
    )
    continues_output: bool = Field(
        True, description="whether the backend's own decoding (cloud-only) continues any generation after some "
        "output exactly; if not, it refuses a continuation where ``continuation_refusal`` gives a reason, and an "
        "edge never hands such a generation over to it mid-request"
    )
    engine: EngineLayout | None = Field(None, description="the vLLM backend's engine; None for other backends")


class ServerInfo(ModelInfo):
    """``GET /v1/info``: the backend's ModelInfo and the protocol version."""

    protocol_version: int = PROTOCOL_VERSION

    @classmethod
    def of(cls, info: ModelInfo) -> ServerInfo:
        return cls.model_validate(info.model_dump())
