"""Target-model backends. Import a concrete backend lazily: torch and vLLM are heavy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verifier.backends.base import SequenceState, TargetBackend

__all__ = ["BackendOptions", "SequenceState", "TargetBackend", "load_backend"]


@dataclass(frozen=True)
class BackendOptions:
    """Everything a backend is built from (the verifier's settings of the same names)."""

    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    max_context: int | None = None
    cpu_linear: str = "auto"
    varlen: bool | None = None  # torch: one pass per batch (None: where the model allows)
    vllm_block_size: int = 32
    vllm_enforce_eager: bool = True
    vllm_gpu_memory_utilization: float = 0.9
    vllm_kv_cache_gib: int = 1
    vllm_live_slots: int = 8
    vllm_max_num_seqs: int = 64


def load_backend(name: str, model_path: str, options: BackendOptions) -> TargetBackend:
    if name == "torch":
        from verifier.backends.torch_backend import TorchBackend

        return TorchBackend(Path(model_path), dtype=options.dtype, device=options.device, threads=options.threads,
                            max_context=options.max_context, cpu_linear=options.cpu_linear, varlen=options.varlen)
    if name == "vllm":
        from verifier.backends.vllm_backend import VllmBackend

        return VllmBackend(Path(model_path), dtype=options.dtype, max_context=options.max_context,
                           block_size=options.vllm_block_size, enforce_eager=options.vllm_enforce_eager,
                           gpu_memory_utilization=options.vllm_gpu_memory_utilization,
                           kv_cache_gib=options.vllm_kv_cache_gib, live_slots=options.vllm_live_slots,
                           max_num_seqs=options.vllm_max_num_seqs)
    raise ValueError(f"unknown backend {name!r}; available: torch, vllm")
