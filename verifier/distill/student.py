"""Build the draft (student): a shallow llama with the target's tokenizer.

When its width equals the target's, it starts from the target: embeddings and final norm
copied (embeddings frozen, and tied to the output head, so the draft scores tokens with
the target's own head) and its layers copied from the target's first layers. The frozen
embeddings are first passed through the export's quantisation (head_qtype), so the layers
learn to work with the head llama.cpp will actually run. Otherwise it starts from random
weights of the requested width.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def picked_layers(n_target: int, n_draft: int) -> list[int]:
    """The first n_draft target layers.

    Measured before training on SmolLM2-135M (8 of 30 layers, top-1 agreement with the
    target): first 8 layers 4.9%; first 7 + last 0.0%; evenly spaced 0.0%. A contiguous
    prefix keeps the residual stream consistent; distillation then adapts it to the head.
    """
    if n_draft > n_target:
        raise ValueError("the draft cannot have more layers than the target")
    return list(range(n_draft))


def build_student(
    target_dir: Path, layers: int, hidden: int | None, seed: int, head_qtype: str | None = None
) -> tuple[LlamaForCausalLM, bool]:
    """Returns (student, initialised_from_target)."""
    torch.manual_seed(seed)
    tcfg = AutoConfig.from_pretrained(target_dir)
    cfg = LlamaConfig.from_dict(tcfg.to_dict())
    cfg.num_hidden_layers = layers
    from_target = hidden is None or hidden == tcfg.hidden_size
    if hidden is not None and not from_target:
        cfg.hidden_size = hidden
        cfg.num_attention_heads = max(1, hidden // 64)
        cfg.num_key_value_heads = max(1, cfg.num_attention_heads // 3)
        cfg.head_dim = hidden // cfg.num_attention_heads
        cfg.intermediate_size = int(round(hidden * 8 / 3 / 64)) * 64
    student = LlamaForCausalLM(cfg)
    if from_target:
        teacher = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32)
        tsd = teacher.state_dict()
        sd = student.state_dict()
        for key in sd:
            if key.startswith("model.layers."):
                i = int(key.split(".")[2])
                j = picked_layers(tcfg.num_hidden_layers, layers)[i]
                src = key.replace(f"model.layers.{i}.", f"model.layers.{j}.", 1)
                sd[key] = tsd[src].clone()
            elif key in tsd:
                sd[key] = tsd[key].clone()
        if head_qtype is not None:
            from verifier.distill.export import quant_round_trip

            sd["model.embed_tokens.weight"] = quant_round_trip(sd["model.embed_tokens.weight"], head_qtype)
        student.load_state_dict(sd)
        student.tie_weights()
        student.model.embed_tokens.weight.requires_grad_(False)
    return student, from_target
