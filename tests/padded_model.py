"""A copy of a Llama-family HF model whose attention heads divide by a tensor-parallel size.

SmolLM2-135M has 9 query and 3 key/value heads: vLLM cannot split it over 2 workers. One more
key/value head and its group of query heads are added with zero weights (zero keys, values
and output columns), so every layer computes the same function: the padded heads add exact
zeros to the attention output. The copy is a real model with real output, and divides by 2
and 4.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def pad_attention_heads(source: Path, target: Path, extra_kv_heads: int = 1) -> Path:
    """Write ``source``'s model with ``extra_kv_heads`` more key/value heads (and their query
    heads) of zero weight to ``target``; the tokenizer and the other files are copied."""
    config = json.loads((source / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    group = heads // kv_heads
    extra_q, extra_kv = extra_kv_heads * group * head_dim, extra_kv_heads * head_dim
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(source.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    padded: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        if name.endswith("self_attn.q_proj.weight"):
            w = torch.cat([w, w.new_zeros(extra_q, w.shape[1])])
        elif name.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            w = torch.cat([w, w.new_zeros(extra_kv, w.shape[1])])
        elif name.endswith("self_attn.o_proj.weight"):
            w = torch.cat([w, w.new_zeros(w.shape[0], extra_q)], dim=1)
        elif name.endswith(("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias")):
            raise ValueError(f"{name}: attention biases are not padded")
        padded[name] = w.contiguous()
    target.mkdir(parents=True, exist_ok=True)
    save_file(padded, str(target / "model.safetensors"), metadata={"format": "pt"})
    config.update(num_attention_heads=heads + extra_kv_heads * group, num_key_value_heads=kv_heads + extra_kv_heads,
                  head_dim=head_dim)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    for file in source.iterdir():
        if file.is_file() and file.suffix != ".safetensors" and file.name != "config.json":
            shutil.copy(file, target / file.name)
    return target
