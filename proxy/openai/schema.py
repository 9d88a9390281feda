"""OpenAI request models.

- Fields Tandem honours are typed and validated.
- Fields with no effect on generation (``store``, ``metadata``, ``service_tier``, ``user`` as a
  string or an object, ...) are accepted.
- Fields that would change the output and that Tandem cannot honour are accepted only at their
  neutral value (``n=1``, ``presence_penalty=0``, ``tools=[]``, ``response_format`` text...);
  anything else is a 400 naming the field.
- Unknown fields are accepted, as vLLM and the llama.cpp server do (real clients send them),
  and listed by ``ignored_fields()``: the edge reports them in a response header and logs
  each once (``--strict-fields`` refuses them instead).
- Tandem's own ``tandem`` options are strict: a typo there is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from proxy.settings import Mode
from verifier.core.logprobs import MAX_TOP_LOGPROBS
from verifier.core.protocol import MAX_LOGIT_BIAS

MAX_MESSAGES = 4096  # messages of one chat request
MAX_CHOICES = 16  # n and best_of: each choice is a generation of its own, run concurrently


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """An OpenAI object: unknown fields are kept aside (``model_extra``) and reported."""

    model_config = ConfigDict(extra="allow")

    def unknown_fields(self, prefix: str = "") -> list[str]:
        return [prefix + name for name in (self.model_extra or {})]


class StreamOptions(_Open):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # no effect: Tandem's chunks carry no obfuscation padding


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Prediction(_Strict):
    """OpenAI's Predicted Outputs: text the answer is expected to repeat (a file being edited);
    its tokens are drafts the verifier checks (``proxy.draft.prediction``)."""

    type: Literal["content"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class FunctionCall(_Open):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool message: the call it answers

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(_Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: FunctionName


class TextFormat(_Open):
    type: Literal["text"]


class JsonObjectFormat(_Open):
    type: Literal["json_object"]


class JsonSchema(_Open):
    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Open):
    type: Literal["json_schema"]
    json_schema: JsonSchema

    def output_schema(self) -> dict[str, Any]:
        """The schema the output must follow (none given: any JSON object)."""
        return self.json_schema.schema_ if self.json_schema.schema_ is not None else {"type": "object"}


class TandemOptions(_Strict):
    """Tandem's own per-request extension (OpenAI SDK: ``extra_body={"tandem": {...}}``)."""

    mode: Mode | None = Field(None, description="auto | speculative | cloud | draft (edge only)")
    gamma: int | None = Field(None, ge=0, le=32, description="draft tokens per round")
    confidence_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="end a round before a draft token with confidence below this"
    )
    cumulative_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="end a round before a draft token where the product of the round's "
        "confidences falls to this (PipeSD's second threshold; 0 off)"
    )
    pipeline: bool | None = Field(
        None, description="draft on while rounds are verified (true) or wait for each round (false: stop-and-wait)"
    )
    trigger: Literal["confidence", "predictor", "tuned"] | None = Field(
        None, description="when a round goes to verification: the confidence thresholds, the edge's rejection "
        "predictor (needs an edge started with --predictor), or thresholds tuned online (Bayesian optimisation)"
    )
    upload: Literal["whole", "planned"] | None = Field(
        None, description="stop-and-wait rounds: sent whole once drafted, or in planned batches as drafted"
    )
    tpot_slo_ms: float | None = Field(
        None, gt=0, le=600_000, description="time-per-output-token target the verifier schedules this request by"
    )
    ttft_slo_ms: float | None = Field(None, gt=0, le=600_000, description="time-to-first-token target")


def _lone_surrogate(value: object, path: str) -> str | None:
    """Where in a parsed JSON body a string holds a lone UTF-16 surrogate ("\\ud800" escapes
    that pair with nothing), which no UTF-8 text can hold; None if nowhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and _lone_surrogate(key, path) is not None:
            return path or "body"
        where = _lone_surrogate(item, f"{path}.{key}" if path else str(key))
        if where is not None:
            return where
    return None


#: fields that would change the output and that this server cannot honour, with the values
#: that change nothing (None always does)
UNHONOURED: dict[str, tuple[object, ...]] = {
    "functions": ([],),
    "function_call": ("none",),
    "reasoning_effort": (),
    "audio": (),
    "modalities": (["text"],),
    "web_search_options": (),
}


class SamplingFields(_Open):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = Field(
        None, max_length=MAX_LOGIT_BIAS)
    # the extensions vLLM and the llama.cpp server take (OpenAI SDK: extra_body)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    top_k: int | None = Field(None, ge=-1, description="-1 or 0: off")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    min_tokens: int | None = Field(None, ge=0)
    return_token_ids: bool | None = Field(
        None, description="each choice carries its output token ids (`token_ids`); a stream sends them on the "
        "choice's last chunk")
    tandem: TandemOptions | None = None
    prediction: Prediction | None = None
    # no effect on generation: accepted
    user: str | dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # would change the output, cannot be honoured: neutral values only (UNHONOURED)
    functions: Any = None
    function_call: Any = None
    response_format: TextFormat | JsonObjectFormat | JsonSchemaFormat | None = Field(None, discriminator="type")
    reasoning_effort: Any = None
    audio: Any = None
    modalities: Any = None
    web_search_options: Any = None

    @field_validator(*UNHONOURED)
    @classmethod
    def _unhonoured_only_neutral(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if v is not None and v not in UNHONOURED[name]:
            raise ValueError(f"{name} is not supported by this server (this model and edge cannot honour it: "
                             "the output would not be what you asked for)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: object) -> object:
        where = _lone_surrogate(data, "")
        if where is not None:
            raise ValueError(f"{where} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                             "which is not valid Unicode text")
        return data


    @field_validator("logit_bias")
    @classmethod
    def _bias_keys_are_token_ids(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key in v or {}:
            if not key.isdigit():
                raise ValueError(f"logit_bias keys must be token ids (decimal integers), not {key!r}")
        return v

    @model_validator(mode="after")
    def _min_tokens_within_max(self) -> SamplingFields:
        limit = self.token_limit()
        if self.min_tokens is not None and limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({limit})")
        return self

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingFields:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema ``response_format`` asks the output to follow; None: free text."""
        if isinstance(self.response_format, JsonSchemaFormat):
            return self.response_format.output_schema()
        if isinstance(self.response_format, JsonObjectFormat):
            return {"type": "object"}
        return None

    def ignored_fields(self) -> list[str]:
        """Unknown fields of the request (dotted paths), in order, each once."""
        found = self.unknown_fields()
        if self.stream_options is not None:
            found += self.stream_options.unknown_fields("stream_options.")
        return found

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def token_limit(self) -> int | None:
        return self.max_tokens

    def logprobs_wanted(self) -> int | None:
        """The target's logprobs of each output token with this many alternatives; None: not asked."""
        return None

    def best_of_wanted(self) -> int:
        """Choices to generate, of which the n most likely are returned (completions only)."""
        return 1


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    parallel_tool_calls: bool | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = [t.function.name for t in self.tools or []]
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names the function {self.tool_choice.function.name!r}, which is not "
                                 "among tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def ignored_fields(self) -> list[str]:
        found = super().ignored_fields()
        for m in self.messages:
            found += [f for f in m.unknown_fields("messages[].") if f not in found]
        return found


class CompletionRequest(SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)
    suffix: str | None = None

    @model_validator(mode="after")
    def _best_of_covers_n(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of > 1:
            if self.best_of < (self.n or 1):
                raise ValueError(f"best_of ({self.best_of}) must be at least n ({self.n})")
            if self.stream:
                raise ValueError("best_of > 1 cannot be streamed (the best choices are known only at the end)")
        return self

    def logprobs_wanted(self) -> int | None:
        return self.logprobs

    def best_of_wanted(self) -> int:
        return self.best_of or 1

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix is not supported by this server")
        return v

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
