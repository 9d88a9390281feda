"""Target-model backends. Import a concrete backend lazily: torch and vLLM are heavy."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.backends.base import SequenceState, TargetBackend

__all__ = ["BackendOptions", "SequenceState", "TargetBackend", "check_backend", "load_backend", "run_worker_node"]


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
    vllm_enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on a GPU
    vllm_gpu_memory_utilization: float = 0.9
    vllm_kv_cache_gib: int = 1
    vllm_live_slots: int = 8
    vllm_max_num_seqs: int = 64
    vllm_engine_args: Mapping[str, Any] = field(default_factory=dict)  # the operator's, any vLLM engine argument
    vllm_given: frozenset[str] = frozenset()  # the engine names of the settings above the operator set

    def vllm_kwargs(self) -> dict[str, Any]:
        """The vLLM backend's settings (``verifier.backends.vllm_args.vllm_engine_args``)."""
        return {"dtype": self.dtype, "max_context": self.max_context, "block_size": self.vllm_block_size,
                "enforce_eager": self.vllm_enforce_eager, "gpu_memory_utilization": self.vllm_gpu_memory_utilization,
                "live_slots": self.vllm_live_slots, "max_num_seqs": self.vllm_max_num_seqs,
                "operator": self.vllm_engine_args, "given": self.vllm_given}


def load_backend(name: str, model_path: str, options: BackendOptions) -> TargetBackend:
    if name == "torch":
        from verifier.backends.torch_backend import TorchBackend

        return TorchBackend(Path(model_path), dtype=options.dtype, device=options.device, threads=options.threads,
                            max_context=options.max_context, cpu_linear=options.cpu_linear, varlen=options.varlen)
    if name == "vllm":
        from verifier.backends.vllm_backend import VllmBackend

        kwargs = options.vllm_kwargs()
        return VllmBackend(Path(model_path), kv_cache_gib=options.vllm_kv_cache_gib,
                           engine_args=kwargs.pop("operator"), **kwargs)
    raise ValueError(f"unknown backend {name!r}; available: torch, vllm")


def check_backend(name: str, model_path: str, options: BackendOptions) -> None:
    """Refuse bad settings before the model loads: for vLLM, its engine arguments as vLLM
    checks them (``verifier.backends.vllm_args.EngineArgsError``)."""
    if name == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("the vllm backend (the default) needs vLLM: pip install '.[verifier,vllm]', "
                             "or run the target with PyTorch: --backend torch")
        from verifier.backends.vllm_args import validate_engine_args, vllm_engine_args

        validate_engine_args(vllm_engine_args(Path(model_path), **options.vllm_kwargs()))
    elif options.vllm_engine_args:
        raise ValueError("--vllm-engine-args needs --backend vllm")


def run_worker_node(model_path: str, options: BackendOptions) -> None:
    """A worker node of a multi-node vLLM layout: this node's workers, no API, until stopped."""
    from verifier.backends.vllm_headless import run_worker_node as run

    run(Path(model_path), options)
