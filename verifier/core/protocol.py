"""The verify API's JSON side: server info, cloud-only generation, session parameters.

Together with the frames of ``verifier.core.wire`` (sessions and rounds on the persistent
channel) the only contract between an edge and the cloud verifier, one protocol version for
both. Documented in docs/verify-api.md; words as defined in ``verifier.core.sampling``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from verifier.core.sampling import effective_temperature
from verifier.core.wire import PROTOCOL_VERSION

API_PREFIX = "/v1"
#: the WebSocket route of the channel (sessions and rounds, ``verifier.core.wire``)
CHANNEL_PATH = f"{API_PREFIX}/channel"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingParams(_Strict):
    """How the target distribution is formed. temperature 0 means greedy."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="below 1e-5: greedy (0)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, description="keys all randomness of the session")

    @field_validator("temperature")
    @classmethod
    def _greedy_below_floor(cls, v: float) -> float:
        return effective_temperature(v)


class SloTargets(_Strict):
    """Latency targets of one generation; unset fields take the verifier's defaults.

    tpot_ms: time per output token; a round's deadline is its arrival plus tpot_ms for every
    token it is expected to commit. ttft_ms: time to first token, the prefill's deadline."""

    tpot_ms: float | None = Field(None, gt=0, le=600_000)
    ttft_ms: float | None = Field(None, gt=0, le=600_000)


class SessionCreate(_Strict):
    """A session's parameters (from the channel's ``Open`` frame), validated."""

    protocol_version: int = PROTOCOL_VERSION
    prompt_token_ids: list[int] = Field(min_length=1)
    sampling: SamplingParams = SamplingParams()
    slo: SloTargets | None = None


class SessionCreated(_Strict):
    session_id: str
    protocol_version: int = PROTOCOL_VERSION
    prompt_tokens: int
    max_context: int


class GenerateRequest(_Strict):
    """Cloud-only decoding: the target generates alone and streams token ids back."""

    protocol_version: int = PROTOCOL_VERSION
    prompt_token_ids: list[int] = Field(min_length=1)
    sampling: SamplingParams = SamplingParams()
    slo: SloTargets | None = None
    max_tokens: int = Field(ge=1)
    stop_token_ids: list[int] = Field(default_factory=list)


class GeneratedTokens(_Strict):
    """One NDJSON line of a generate stream."""

    token_ids: list[int]
    compute_ms: float = Field(description="the verifier's model time for these tokens")


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


class ServerInfo(ModelInfo):
    """``GET /v1/info``: the backend's ModelInfo and the protocol version."""

    protocol_version: int = PROTOCOL_VERSION

    @classmethod
    def of(cls, info: ModelInfo) -> ServerInfo:
        return cls.model_validate(info.model_dump())
