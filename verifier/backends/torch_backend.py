"""PyTorch/transformers target backend (CPU or GPU).

Llama-family models score a whole batch in one pass (``llama_varlen``: flat new tokens, one KV
store per session). Other architectures fall back to one transformers forward per item, each
session with its own ``DynamicCache``; the batch interface is the same.
"""

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

from verifier.backends import llama_varlen
from verifier.backends.base import CpuLinear, ScoreBatch, SequenceState, TargetBackend, eos_token_ids
from verifier.core.protocol import ModelInfo

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_LINEAR = get_args(CpuLinear)


def default_threads() -> int:
    """All usable cores but one: the server's event loop needs a core of its own. When it
    shares the compute cores, every barrier of a parallel matmul waits on it, so a token takes
    longer with every core computing than with one left to the loop."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def use_onednn_linear(cpu_linear: str, device: torch.device, dtype: str) -> bool:
    """Whether Linear layers run through oneDNN instead of torch's default BLAS.

    On CPU in float32, a verify round multiplies a few rows (the drafts) by every weight.
    torch's default BLAS (MKL) is slow for those shapes on the AMD CPUs it was measured on: a few rows
    cost much more than one, and oneDNN adds less for them. ``auto`` picks oneDNN exactly when it applies;
    ``onednn`` insists and fails where it does not apply.
    """
    if cpu_linear not in CPU_LINEAR:
        raise ValueError(f"cpu_linear must be one of {CPU_LINEAR}")
    applies = device.type == "cpu" and dtype == "float32" and torch.backends.mkldnn.is_available()
    if cpu_linear == "onednn" and not applies:
        raise ValueError("cpu_linear=onednn needs device cpu, dtype float32 and a torch built with oneDNN")
    return cpu_linear != "torch" and applies


class VarlenState(SequenceState):
    """A session's KV cache for the batched Llama path."""

    def __init__(self, store: llama_varlen.KVStore) -> None:
        self.store = store
        self.released = False

    @property
    def length(self) -> int:
        return self.store.length


class CacheState(SequenceState):
    """A session's transformers DynamicCache, for the per-item fallback path."""

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


class TorchBackend(TargetBackend):
    def __init__(
        self,
        model_path: Path,
        dtype: str = "float32",
        device: str = "cpu",
        threads: int | None = None,
        max_context: int | None = None,
        cpu_linear: str = "auto",
        varlen: bool | None = None,
    ) -> None:
        """varlen: batch Llama-family models in one pass (None: whenever the model allows)."""
        torch.set_num_threads(threads or default_threads())
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}")
        self._device = torch.device(device)
        self._dtype = _DTYPES[dtype]
        config = AutoConfig.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self._dtype)
        self._model = model.to(self._device)  # type: ignore[arg-type]  # transformers' stub wants a model
        self._model.eval()
        supported = llama_varlen.supports(self._model)
        if varlen and not supported:
            raise ValueError(f"batched scoring supports Llama-family models, not {config.model_type!r}")
        self.varlen = supported if varlen is None else varlen
        self.onednn_linear = use_onednn_linear(cpu_linear, self._device, dtype)
        if self.onednn_linear:
            self._model = to_mkldnn(self._model)  # swaps every nn.Linear for a oneDNN one
        self._kv_shape = (config.num_hidden_layers, config.num_key_value_heads,
                          getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        ctx = int(getattr(config, "max_position_embeddings", 2048))
        self.info = ModelInfo(
            model=Path(model_path).name,
            backend="torch",
            vocab_size=int(config.vocab_size),
            max_context=min(ctx, max_context) if max_context else ctx,
            eos_token_ids=eos_token_ids(config.eos_token_id),
        )
        log.info("torch backend loaded", extra={"model": str(model_path), "dtype": dtype,
                                                "onednn_linear": self.onednn_linear, "varlen": self.varlen})

    def new_state(self) -> SequenceState:
        if self.varlen:
            layers, kv_heads, head_dim = self._kv_shape
            return VarlenState(llama_varlen.KVStore(layers, kv_heads, head_dim, self._dtype, self._device))
        return CacheState()

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        if self.varlen:
            stores = [self._varlen_state(s).store for s in batch.states]
            ids = torch.from_numpy(batch.token_ids).to(self._device)
            rows = llama_varlen.forward_varlen(self._model, stores, ids, batch.offsets.tolist(), batch.logits_rows)
            return [r.cpu().numpy() for r in rows]
        return [self._extend(self._cache_state(s), batch.tokens_of(i).tolist(), batch.logits_rows[i])
                for i, s in enumerate(batch.states)]

    @torch.inference_mode()
    def _extend(self, state: CacheState, token_ids: list[int], logits_rows: int) -> npt.NDArray[np.float32]:
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
        if isinstance(state, VarlenState):
            state.store.length = min(state.store.length, length)
            return
        state = self._cache_state(state)
        if length < state.length:
            state.cache.crop(length - state.length)  # negative: drop that many tokens
            state.cropped(length)

    def release(self, state: SequenceState) -> None:
        if isinstance(state, VarlenState):
            state.store.free()
            state.released = True
        else:
            self._cache_state(state).release()

    @staticmethod
    def _varlen_state(state: SequenceState) -> VarlenState:
        if not isinstance(state, VarlenState) or state.released:
            raise TypeError(f"not a live batched-path state: {type(state).__name__}")
        return state

    @staticmethod
    def _cache_state(state: SequenceState) -> CacheState:
        if not isinstance(state, CacheState):
            raise TypeError(f"the per-item path cannot use a {type(state).__name__}")
        return state
