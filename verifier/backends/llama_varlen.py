"""One forward pass over the new tokens of many sessions at once, for Llama-family models.

The batch is flat, as in vLLM's speculative-decoding metadata: ``token_ids`` [T] holds the new
tokens of every item back to back and ``offsets`` [n+1] says where each item's tokens start.
Projections, MLPs and the head run once over all T rows (the cost that dominates on a CPU);
attention runs per item, over that session's own KV cache plus its new tokens. Each session's
KV cache is a growable tensor owned by a ``KVStore``: appending writes a slice, rolling back
after a rejection only moves the length, nothing is copied between rounds.

The model's own modules (embeddings, norms, rotary embedding, linear layers, head) do the math,
so the numbers are the model's; only the batching is ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812 - the conventional name
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

_MIN_CAPACITY = 64


class KVStore:
    """The KV cache of one session: [layers, 2, kv_heads, capacity, head_dim], ``length`` valid."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self._shape = (layers, 2, kv_heads)
        self._head_dim = head_dim
        self._dtype = dtype
        self._device = device
        self._data = torch.empty((*self._shape, 0, head_dim), dtype=dtype, device=device)
        self.length = 0

    def reserve(self, length: int) -> None:
        """Make room for ``length`` tokens (grows by doubling; keeps what is held)."""
        capacity = self._data.shape[3]
        if length <= capacity:
            return
        new = max(_MIN_CAPACITY, capacity * 2, length)
        grown = torch.empty((*self._shape, new, self._head_dim), dtype=self._dtype, device=self._device)
        grown[:, :, :, : self.length] = self._data[:, :, :, : self.length]
        self._data = grown

    def keys(self, layer: int, end: int) -> torch.Tensor:
        return self._data[layer, 0, :, :end]

    def values(self, layer: int, end: int) -> torch.Tensor:
        return self._data[layer, 1, :, :end]

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: [kv_heads, n, head_dim] for positions start..start+n-1 (reserved beforehand)."""
        n = k.shape[1]
        self._data[layer, 0, :, start:start + n] = k
        self._data[layer, 1, :, start:start + n] = v

    def free(self) -> None:
        self._data = torch.empty((*self._shape, 0, self._head_dim), dtype=self._dtype, device=self._device)
        self.length = 0


def supports(model: Any) -> bool:
    """Whether ``forward_varlen`` can run this model: a plain Llama-style decoder."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in ("llama", "mistral", "qwen2"):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    inner = getattr(model, "model", None)
    return all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb"))


@torch.inference_mode()
def forward_varlen(
    model: Any,  # a transformers LlamaForCausalLM (or Mistral/Qwen2): dynamically typed
    stores: Sequence[KVStore],
    token_ids: torch.Tensor,
    offsets: Sequence[int],
    logits_rows: Sequence[int],
) -> list[torch.Tensor]:
    """Append each item's new tokens to its KV store; return each item's last ``logits_rows[i]``
    rows of logits, [rows_i, vocab] float32.

    token_ids: [T] int64; offsets: [n+1], item i owns token_ids[offsets[i]:offsets[i+1]].
    """
    inner = model.model
    config = model.config
    n_items = len(stores)
    positions = torch.cat([
        torch.arange(stores[i].length, stores[i].length + offsets[i + 1] - offsets[i], device=token_ids.device)
        for i in range(n_items)
    ])
    for i, store in enumerate(stores):
        store.reserve(store.length + offsets[i + 1] - offsets[i])
    hidden = inner.embed_tokens(token_ids)  # [T, d]
    cos, sin = inner.rotary_emb(hidden, positions[None, :])  # [1, T, head_dim] each
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    n_heads = config.num_attention_heads
    n_kv = config.num_key_value_heads
    group = n_heads // n_kv
    scaling = head_dim**-0.5
    for layer_idx, layer in enumerate(inner.layers):
        attn = layer.self_attn
        residual = hidden
        x = layer.input_layernorm(hidden)
        q = attn.q_proj(x).view(1, -1, n_heads, head_dim).transpose(1, 2)  # [1, H, T, D]
        k = attn.k_proj(x).view(1, -1, n_kv, head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(1, -1, n_kv, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        hidden = residual + attn.o_proj(_attend(stores, offsets, layer_idx, q, k, v, group, scaling))
        residual = hidden
        hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
    for i, store in enumerate(stores):
        store.length += offsets[i + 1] - offsets[i]
    return _last_rows(model, hidden, offsets, logits_rows)


def _attend(stores: Sequence[KVStore], offsets: Sequence[int], layer_idx: int, q: torch.Tensor, k: torch.Tensor,
            v: torch.Tensor, group: int, scaling: float) -> torch.Tensor:
    """One layer's attention, item by item: each item's new keys and values written to its store
    (at its current length), its queries over that store. q: [1, H, T, D]; k, v: [1, KV, T, D];
    returns [T, H * D]."""
    n_heads, head_dim = q.shape[1], q.shape[3]
    outputs = []
    for i, store in enumerate(stores):
        a, b = offsets[i], offsets[i + 1]
        start = store.length
        store.write(layer_idx, start, k[0, :, a:b], v[0, :, a:b])
        end = start + (b - a)
        keys = store.keys(layer_idx, end).repeat_interleave(group, dim=0)  # [H, end, D]
        values = store.values(layer_idx, end).repeat_interleave(group, dim=0)
        # query j sits at position start + j and sees keys 0..start+j
        mask = torch.ones((b - a, end), dtype=torch.bool, device=q.device).tril(diagonal=start)
        out = F.scaled_dot_product_attention(q[:, :, a:b], keys[None], values[None], attn_mask=mask,
                                             scale=scaling)  # [1, H, n_i, D]
        outputs.append(out[0].transpose(0, 1).reshape(b - a, n_heads * head_dim))
    return torch.cat(outputs)


def _last_rows(model: Any, hidden: torch.Tensor, offsets: Sequence[int],
               logits_rows: Sequence[int]) -> list[torch.Tensor]:
    """The logits of each item's last ``logits_rows[i]`` rows of ``hidden`` [T, d]: [rows_i, vocab] float32."""
    rows = torch.cat([torch.arange(offsets[i + 1] - r, offsets[i + 1]) for i, r in enumerate(logits_rows)])
    if rows.numel() == 0:
        return [hidden.new_zeros((0, model.config.vocab_size), dtype=torch.float32) for _ in logits_rows]
    logits = model.lm_head(model.model.norm(hidden[rows])).float()
    out_rows: list[torch.Tensor] = []
    at = 0
    for r in logits_rows:
        out_rows.append(logits[at:at + r])
        at += r
    return out_rows
