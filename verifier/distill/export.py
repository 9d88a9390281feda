"""A llama-architecture torch draft to GGUF that llama.cpp loads as an edge draft, and back.

Tokenizer metadata (and the chat template) are copied from the target GGUF, so draft and
target share token ids. Q/K projections are permuted to llama.cpp's rotary layout. When
the draft kept the target's (frozen) embeddings, the target's quantised token_embd tensor
is copied byte for byte. ``import_gguf`` reads a draft GGUF back into a torch state dict
(dequantised), so a shipped draft can be trained further without its training run's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

_SKIP_FIELDS = ("GGUF.", "general.architecture", "general.file_type", "general.name", "general.size_label",
                "general.finetune", "general.basename", "llama.")

QTYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
          "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
          "q5_1": gguf.GGMLQuantizationType.Q5_1}


def quant_round_trip(w: torch.Tensor, qtype_name: str) -> torch.Tensor:
    """w as llama.cpp will see it after export as qtype_name (quantise, then dequantise)."""
    qtype = QTYPES[qtype_name]
    if qtype == gguf.GGMLQuantizationType.F32:
        return w.clone()
    arr = np.ascontiguousarray(w.detach().to(torch.float32).cpu().numpy())
    back = arr.astype(np.float16).astype(np.float32) if qtype == gguf.GGMLQuantizationType.F16 \
        else gguf.quants.dequantize(gguf.quants.quantize(arr, qtype), qtype)
    return torch.from_numpy(np.ascontiguousarray(back).reshape(arr.shape)).to(w.dtype)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotary (half-split) -> GGUF/llama.cpp rotary (interleaved) row order."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of ``_permute``: llama.cpp's rotary row order back to HF's."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


#: a layer's tensors, in the order the export writes them: GGUF name (after "blk.{i}.") -> HF name
#: (after "model.layers.{i}."); the *_norm ones stay float32, attn_q/attn_k rows are permuted
_LAYER_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}


def import_gguf(path: Path) -> dict[str, torch.Tensor]:
    """A llama GGUF's tensors as a HF ``LlamaForCausalLM`` state dict (float32, dequantised; Q/K
    rows back in HF's rotary order). Tied embeddings appear once, as ``model.embed_tokens``."""
    reader = gguf.GGUFReader(str(path))
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    heads = {"attn_q": n_head, "attn_k": n_kv}
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF lists dimensions fastest first
        w = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)
        name = t.name.removesuffix(".weight")
        if name == "token_embd":
            key = "model.embed_tokens.weight"
        elif name == "output_norm":
            key = "model.norm.weight"
        elif name == "output":
            key = "lm_head.weight"
        elif name.startswith("blk."):
            _, i, part = name.split(".", 2)
            if part in heads:
                w = _unpermute(w, heads[part])
            key = f"model.layers.{i}.{_LAYER_NAMES[part]}.weight"
        else:
            raise ValueError(f"unexpected tensor {t.name} in {path}")
        out[key] = torch.from_numpy(np.ascontiguousarray(w))
    return out


def _add(writer: gguf.GGUFWriter, name: str, w: np.ndarray, qtype: gguf.GGMLQuantizationType) -> None:
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, w)
    elif qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, w.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(w, qtype), raw_dtype=qtype)


def export_gguf(
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    target_gguf: Path,
    out: Path,
    name: str,
    weight_type: str = "q8_0",
    embed_type: str = "copy",
) -> Path:
    """state: HF LlamaForCausalLM state dict; config: its hyper-parameters.

    embed_type "copy" takes the target's token_embd bytes (the draft must have frozen the
    target's embeddings); otherwise the draft's embeddings are quantised to that type.
    """
    reader = gguf.GGUFReader(str(target_gguf))
    qtype = QTYPES[weight_type]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    for key, field in reader.fields.items():
        if key.startswith(_SKIP_FIELDS):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), vtype, sub)
    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_kv = int(config["num_key_value_heads"])
    hidden = int(config["hidden_size"])
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if weight_type == "q8_0" else gguf.LlamaFileType.ALL_F32)
    writer.add_block_count(n_layers)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_rope_dimension_count(hidden // n_head)

    def t(key: str) -> np.ndarray:
        return state[key].detach().to(torch.float32).cpu().numpy()

    if embed_type == "copy":
        src = next(x for x in reader.tensors if x.name == "token_embd.weight")
        writer.add_tensor("token_embd.weight", np.asarray(src.data), raw_dtype=src.tensor_type)
    else:
        _add(writer, "token_embd.weight", t("model.embed_tokens.weight"), QTYPES[embed_type])
    if not config.get("tie_word_embeddings", True):
        _add(writer, "output.weight", t("lm_head.weight"), qtype)
    _add(writer, "output_norm.weight", t("model.norm.weight"), gguf.GGMLQuantizationType.F32)
    heads = {"attn_q": n_head, "attn_k": n_kv}  # the rows permuted to llama.cpp's rotary layout
    for i in range(n_layers):
        for part, hf in _LAYER_NAMES.items():
            w = t(f"model.layers.{i}.{hf}.weight")
            if part in heads:
                w = _permute(w, heads[part])
            norm = part.endswith("_norm")
            _add(writer, f"blk.{i}.{part}.weight", w, gguf.GGMLQuantizationType.F32 if norm else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
