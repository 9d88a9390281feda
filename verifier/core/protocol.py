"""The verify API, version 1: the only contract between an edge and the cloud verifier.

JSON over HTTP. Documented in docs/verify-api.md; words as defined in
``verifier.core.sampling``. A session holds the verified prefix of one generation; each
``verify`` call carries only the new draft tokens of one round (a few bytes: ids, plus the
sparse proposal when sampling) and gets back how many were accepted and the one next token.
Rounds are numbered so a retried call is answered from the session's memory instead of
being applied twice.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
API_PREFIX = "/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingParams(_Strict):
    """How the target distribution is formed. temperature 0 means greedy."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, description="keys all randomness of the session")


class SloTargets(_Strict):
    """Latency targets of one generation; unset fields take the verifier's defaults.

    tpot_ms: time per output token; a round's deadline is its arrival plus tpot_ms for every
    token it is expected to commit. ttft_ms: time to first token, the prefill's deadline."""

    tpot_ms: float | None = Field(None, gt=0, le=600_000)
    ttft_ms: float | None = Field(None, gt=0, le=600_000)


class SessionCreate(_Strict):
    protocol_version: int = PROTOCOL_VERSION
    prompt_token_ids: list[int] = Field(min_length=1)
    sampling: SamplingParams = SamplingParams()
    slo: SloTargets | None = None


class SessionCreated(_Strict):
    session_id: str
    protocol_version: int = PROTOCOL_VERSION
    prompt_tokens: int
    max_context: int


class Proposal(_Strict):
    """The sparse distribution q a draft token was drawn from (token ids and their probs)."""

    ids: list[int] = Field(min_length=1)
    probs: list[float] = Field(min_length=1)


class VerifyRequest(_Strict):
    round: int = Field(ge=1, description="1, 2, 3, ... per session; a repeat is idempotent")
    draft_token_ids: list[int] = Field(default_factory=list, max_length=64)
    proposals: list[Proposal] | None = Field(
        None, description="one per draft token when sampling; null means id-only drafts"
    )


class VerifyResponse(_Strict):
    round: int
    accepted: int = Field(description="leading draft tokens kept")
    next_token_id: int = Field(description="the recovered token, or the bonus token")
    committed_tokens: int = Field(description="prompt + generated tokens now verified")
    compute_ms: float = Field(description="the verifier's model time for this round (its whole batch's pass)")
    queue_ms: float = Field(0.0, description="time the round waited for its batch")


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
