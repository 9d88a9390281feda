"""PyTorch/transformers target backend (CPU or GPU), one DynamicCache per session."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.mkldnn import to_mkldnn
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

from verifier.backends.base import CpuLinear, SequenceState, TargetBackend
from verifier.core.protocol import ModelInfo

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_LINEAR = get_args(CpuLinear)


def default_threads() -> int:
    """All usable cores but one: the server's event loop needs a core of its own. When it
    shares the compute cores, every barrier of a parallel matmul waits on it (measured on 2
    cores: 54 ms per token with 2 threads, 36 with 1)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def use_onednn_linear(cpu_linear: str, device: torch.device, dtype: str) -> bool:
    """Whether Linear layers run through oneDNN instead of torch's default BLAS.

    On CPU in float32, a verify round multiplies a few rows (the drafts) by every weight.
    torch's default BLAS (MKL) is slow for those shapes on these AMD CPUs: 5 rows cost 1.5x
    one row on 2 threads, 1.8x on 1. oneDNN: 1.2x and 1.5x. ``auto`` picks oneDNN
    exactly when it applies; ``onednn`` insists and fails where it does not apply.
    """
    if cpu_linear not in CPU_LINEAR:
        raise ValueError(f"cpu_linear must be one of {CPU_LINEAR}")
    applies = device.type == "cpu" and dtype == "float32" and torch.backends.mkldnn.is_available()
    if cpu_linear == "onednn" and not applies:
        raise ValueError("cpu_linear=onednn needs device cpu, dtype float32 and a torch built with oneDNN")
    return cpu_linear != "torch" and applies


class TorchState(SequenceState):
    def __init__(self) -> None:
        self._cache: DynamicCache | None = DynamicCache()
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    @property
    def cache(self) -> DynamicCache:
        if self._cache is None:
            raise RuntimeError("this session's KV cache was released")
        return self._cache

    def grew(self, n: int) -> None:
        self._length += n

    def cropped(self, length: int) -> None:
        self._length = length

    def release(self) -> None:
        self._cache = None


def _torch_state(state: SequenceState) -> TorchState:
    if not isinstance(state, TorchState):
        raise TypeError(f"the torch backend cannot use a {type(state).__name__}")
    return state


class TorchBackend(TargetBackend):
    def __init__(
        self,
        model_path: Path,
        dtype: str = "float32",
        device: str = "cpu",
        threads: int | None = None,
        max_context: int | None = None,
        cpu_linear: str = "auto",
    ) -> None:
        torch.set_num_threads(threads or default_threads())
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
        self._device = torch.device(device)
        config = AutoConfig.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_DTYPES[dtype])
        self._model = model.to(self._device)  # type: ignore[arg-type]  # transformers' stub wants a model
        self._model.eval()
        self.onednn_linear = use_onednn_linear(cpu_linear, self._device, dtype)
        if self.onednn_linear:
            self._model = to_mkldnn(self._model)  # swaps every nn.Linear for a oneDNN one
        eos = config.eos_token_id
        eos_ids = list(eos) if isinstance(eos, list) else ([eos] if eos is not None else [])
        ctx = int(getattr(config, "max_position_embeddings", 2048))
        self.info = ModelInfo(
            model=Path(model_path).name,
            backend="torch",
            vocab_size=int(config.vocab_size),
            max_context=min(ctx, max_context) if max_context else ctx,
            eos_token_ids=eos_ids,
        )
        log.info("torch backend loaded",
                 extra={"model": str(model_path), "dtype": dtype, "onednn_linear": self.onednn_linear})

    def new_state(self) -> TorchState:
        return TorchState()

    @torch.inference_mode()
    def extend(
        self, state: SequenceState, token_ids: list[int], logits_rows: int
    ) -> npt.NDArray[np.float32]:
        state = _torch_state(state)
        if not token_ids:
            raise ValueError("extend needs at least one token")
        ids = torch.tensor([token_ids], dtype=torch.long, device=self._device)
        result = self._model(
            input_ids=ids,
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=max(logits_rows, 1),
        )
        state.grew(len(token_ids))
        logits = result.logits[0, -logits_rows:, :] if logits_rows else result.logits[0, :0, :]
        rows: npt.NDArray[np.float32] = logits.float().cpu().numpy()
        return rows

    def truncate(self, state: SequenceState, length: int) -> None:
        state = _torch_state(state)
        if length < state.length:
            state.cache.crop(length - state.length)  # negative: drop that many tokens
            state.cropped(length)

    def release(self, state: SequenceState) -> None:
        _torch_state(state).release()
