"""Verifier settings: every field is a CLI flag and a TANDEM_VERIFIER_* env var."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from verifier.backends.base import CpuLinear


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_VERIFIER_", cli_kebab_case=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8100, description="port to listen on")
    model: str | None = Field(
        None, description="target model (HF directory for torch); default: the prepared SmolLM2-135M-Instruct"
    )
    backend: Literal["torch", "vllm"] = Field(
        "vllm", description="target backend: vllm (vLLM's engine: live rounds inside vLLM's own speculative "
        "decoding, batching, prefix cache) or torch (PyTorch/transformers)"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="weights/compute dtype (float32 keeps greedy ties stable on CPU)"
    )
    cpu_linear: CpuLinear = Field(
        "auto",
        description="Linear kernels of the torch backend: oneDNN (fast for the few-row matmuls of a verify round "
        "on CPU), torch's default BLAS, or auto (oneDNN on CPU in float32)",
    )
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    torch_batching: Literal["auto", "varlen", "per-item"] = Field(
        "auto",
        description="how the torch backend scores a batch: varlen (one pass over every round's new tokens, "
        "Llama-family models), per-item (one transformers forward per round), auto (varlen where supported)",
    )
    vllm_block_size: int = Field(
        32, ge=1, description="vLLM KV block size: a round recomputes the context tail since the last full block"
    )
    vllm_enforce_eager: bool | None = Field(
        None, description="vLLM without CUDA graphs / torch.compile (default: eager on CPU, which needs it; "
        "CUDA graphs on a GPU)"
    )
    vllm_gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM's share of GPU memory")
    vllm_kv_cache_gib: int = Field(
        1, ge=1, description="vLLM's KV cache on CPU, GiB (VLLM_CPU_KVCACHE_SPACE wins if set)"
    )
    vllm_live_slots: int = Field(
        8, ge=0, le=64, description="the live route: drafts vLLM verifies in one step of a session's own live request "
        "(vLLM's num_speculative_tokens; docs/vllm-live-route.md); 0: off, every round on whole rows"
    )
    vllm_engine_args: str | None = Field(
        None, description="any vLLM engine argument (vLLM's AsyncEngineArgs, validated by vLLM at start-up): a JSON "
        "object, e.g. '{\"tensor_parallel_size\": 4, \"quantization\": \"fp8\"}', or the path of a YAML or JSON "
        "file of them; docs/deploy.md"
    )
    vllm_headless: bool = Field(
        False, description="a worker node of a multi-node layout: run vLLM's workers of this node (engine arguments "
        "nnodes, node_rank, master_addr) and serve no API"
    )
    vllm_max_num_seqs: int = Field(
        64, ge=1, description="vLLM's max_num_seqs: live sessions may hold all but 8 of them (paused, with their KV)"
    )
    threads: int | None = Field(
        None, description="compute threads (default: all usable cores but one, left to the server)"
    )
    max_context: int | None = Field(4096, description="cap on prompt + generated tokens per session")
    session_ttl_s: float = Field(120.0, description="idle seconds before a session is freed")
    max_sessions: int = Field(64, description="live sessions at most; more get 503")
    max_sessions_per_edge: int = Field(
        32, ge=1, description="live sessions of one edge (one token; one connection without tokens); more get 429"
    )
    max_queued_rounds: int = Field(
        64, ge=1, description="rounds of one session waiting at once; more end the session with 429"
    )
    max_batch_tokens: int = Field(256, ge=1, description="new tokens scored in one batched pass, at most")
    max_batch_rounds: int = Field(32, ge=1, description="rounds and prefill chunks in one batched pass, at most")
    max_queue_delay_s: float = Field(
        10.0, gt=0, description="a round that would wait longer than this for its pass is refused: 503 overloaded, "
        "with Retry-After"
    )
    prefill_chunk: int = Field(
        256, ge=1, description="prompt tokens prefilled per pass, so a long prompt never stalls other sessions' rounds"
    )
    tpot_slo_ms: float = Field(
        250.0, gt=0, description="default time-per-output-token target; a round's deadline is its arrival plus this "
        "for every token it is expected to commit (per session: SessionCreate.slo)"
    )
    ttft_slo_ms: float = Field(5000.0, gt=0, description="default time-to-first-token target: a prefill's deadline")
    calibration_passes: int = Field(
        0, ge=0, le=64, description="synthetic verify rounds timed at start-up, so the batch-time estimator fits this "
        "backend from the first request (0: it starts from a CPU prior and learns from served batches; each pass "
        "lengthens the start-up: docs/configuration.md)"
    )
    auth_tokens_file: str | None = Field(
        None, description="the edges' tokens, one per line ('name token' or 'token'): every /v1 route and the "
        "channel then need one as 'Authorization: Bearer <token>' (/health stays open); none: open",
    )
    ssl_certfile: str | None = Field(None, description="serve HTTPS/WSS with this certificate (PEM)")
    ssl_keyfile: str | None = Field(None, description="the private key of --ssl-certfile (PEM)")
    max_body_bytes: int = Field(16 << 20, ge=1024, description="largest request body accepted (413 beyond)")
    log_level: str = Field("info", description="logging level")

    def vllm_given(self) -> frozenset[str]:
        """The vLLM engine arguments the operator set through Tandem's own settings (their engine names)."""
        return frozenset(engine for name, engine in ENGINE_NAMES.items() if name in self.model_fields_set)


#: Tandem settings that are vLLM engine arguments too: their engine names
ENGINE_NAMES = {"dtype": "dtype", "max_context": "max_model_len", "vllm_block_size": "block_size",
                "vllm_enforce_eager": "enforce_eager", "vllm_gpu_memory_utilization": "gpu_memory_utilization",
                "vllm_max_num_seqs": "max_num_seqs"}
