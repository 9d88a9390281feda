"""Target-model backends. Import a concrete backend lazily: torch and vLLM are heavy."""

from __future__ import annotations

from pathlib import Path

from verifier.backends.base import SequenceState, TargetBackend

__all__ = ["SequenceState", "TargetBackend", "load_backend"]


def load_backend(
    name: str,
    model_path: str,
    dtype: str,
    device: str,
    threads: int | None,
    max_context: int | None,
    cpu_linear: str = "auto",
    varlen: bool | None = None,
) -> TargetBackend:
    if name == "torch":
        from verifier.backends.torch_backend import TorchBackend

        return TorchBackend(Path(model_path), dtype=dtype, device=device, threads=threads,
                            max_context=max_context, cpu_linear=cpu_linear, varlen=varlen)
    raise ValueError(f"unknown backend {name!r}; available: torch")
