"""Phase 2 of distillation: train the draft on the target's soft labels (top-k KD).

Loss at every reply position: cross-entropy between the target's top-k distribution
(renormalised over its k tokens) and the draft's full softmax. bf16 autocast on CPU,
AdamW with warmup + cosine decay. Every 50th example is held out: its top-1 agreement with
the target is measured at every checkpoint and shown on the progress bar (val), so
over-training shows. A checkpoint (weights, optimiser, step, RNG) is written every few
minutes; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from verifier.distill.data import shard_paths
from verifier.distill.student import build_student


@dataclass(frozen=True)
class TrainConfig:
    target_dir: Path
    data_dirs: tuple[Path, ...]  # every shard in these directories is training data
    work_dir: Path
    layers: int
    hidden: int | None
    seed: int
    epochs: float = 3.0
    batch_tokens: int = 4096
    max_len: int = 320
    lr: float = 6e-4
    warmup: int = 20
    checkpoint_every_s: float = 300.0
    head_qtype: str | None = None  # train against the head as exported (see student.build_student)
    val_every: int = 50  # every n-th example is held out for validation
    init: Path | None = None  # start from these student weights (a student-final.pt) instead of the target's layers


@dataclass
class Example:
    ids: torch.Tensor  # [T] prompt + reply (last reply token dropped: nothing to predict after it)
    first: int  # index of the first position whose label is a reply token
    top_ids: torch.Tensor  # [R, k]
    top_logits: torch.Tensor  # [R, k]


def load_examples(data_dirs: tuple[Path, ...], max_len: int) -> list[Example]:
    out = []
    for path in (p for d in data_dirs for p in shard_paths(d)):
        for r in torch.load(path, weights_only=True)["records"]:
            prompt, reply = r["prompt"].long(), r["reply"].long()
            if reply.numel() == 0:
                continue
            ids = torch.cat([prompt, reply[:-1]])[:max_len]
            first = prompt.numel() - 1
            n_lab = ids.numel() - first
            if n_lab <= 0:
                continue
            out.append(Example(ids, first, r["top_ids"][:n_lab].long(), r["top_logits"][:n_lab].float()))
    return out


def batches(examples: list[Example], batch_tokens: int, rng: random.Random) -> list[list[Example]]:
    """Length-bucketed batches of about batch_tokens padded tokens, shuffled."""
    order = sorted(range(len(examples)), key=lambda i: (examples[i].ids.numel(), rng.random()))
    out: list[list[Example]] = []
    cur: list[Example] = []
    cur_max = 0
    for i in order:
        n = examples[i].ids.numel()
        if cur and max(cur_max, n) * (len(cur) + 1) > batch_tokens:
            out.append(cur)
            cur, cur_max = [], 0
        cur.append(examples[i])
        cur_max = max(cur_max, n)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def kd_loss(model: LlamaForCausalLM, batch: list[Example], pad_id: int) -> tuple[torch.Tensor, float, int]:
    """Returns (loss, top-1 agreement with the target, label count)."""
    T = max(e.ids.numel() for e in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, : e.ids.numel()] = e.ids
        mask[b, : e.ids.numel()] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]
        rows = torch.cat([hidden[b, e.first: e.first + e.top_ids.shape[0]] for b, e in enumerate(batch)])
        logits = model.lm_head(rows).float()  # [N, V]
    top_ids = torch.cat([e.top_ids for e in batch])  # [N, k]
    teacher = torch.softmax(torch.cat([e.top_logits for e in batch]), dim=-1)
    logp = F.log_softmax(logits, dim=-1).gather(1, top_ids)
    loss = -(teacher * logp).sum(-1).mean()
    agree = (logits.argmax(-1) == top_ids[:, 0]).float().mean().item()
    return loss, agree, int(top_ids.shape[0])


def held_out_agreement(model: LlamaForCausalLM, val: list[Example], batch_tokens: int, pad_id: int) -> float:
    """Top-1 agreement with the target on held-out examples (no gradient)."""
    was_training = model.training
    model.eval()
    hits, total = 0.0, 0
    with torch.no_grad():
        for batch in batches(val, batch_tokens, random.Random(0)):
            _, agree, n = kd_loss(model, batch, pad_id)
            hits += agree * n
            total += n
    model.train(was_training)
    return hits / max(1, total)


def initial_weights(init: Path, model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    """The weights to start from: an earlier run's ``student-final.pt``, or a draft GGUF (its
    layers dequantised; embeddings and head as ``model`` has them, the target's frozen ones)."""
    if init.suffix != ".gguf":
        state: dict[str, torch.Tensor] = torch.load(init, weights_only=False)["model"]
        return state
    from verifier.distill.export import import_gguf

    state = model.state_dict()
    loaded = import_gguf(init)
    for key, w in loaded.items():
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            continue  # frozen and tied: the student keeps the target's (quantised as the export stores them)
        if key not in state or state[key].shape != w.shape:
            raise ValueError(f"{init}: {key} does not fit the student ({tuple(w.shape)})")
        state[key] = w
    missing = [k for k in state if k.startswith("model.layers.") and k not in loaded]
    if missing:
        raise ValueError(f"{init} has no {missing[0]} (a draft with other layers?)")
    return state


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the path of the final weights."""
    from tqdm import tqdm

    final = cfg.work_dir / "student-final.pt"
    if final.exists():
        return final
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    ckpt = cfg.work_dir / "checkpoint.pt"
    rng = random.Random(cfg.seed)
    loaded = load_examples(cfg.data_dirs, cfg.max_len)
    val = loaded[:: cfg.val_every] if len(loaded) >= 2 * cfg.val_every else []
    examples = [e for i, e in enumerate(loaded) if not val or i % cfg.val_every]
    if not examples:
        raise RuntimeError(f"no training data in {', '.join(map(str, cfg.data_dirs))}")
    model, _ = build_student(cfg.target_dir, cfg.layers, cfg.hidden, cfg.seed, cfg.head_qtype)
    if cfg.init is not None:
        model.load_state_dict(initial_weights(cfg.init, model))
    pad_id = int(model.config.pad_token_id or 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.01)
    per_epoch = len(batches(examples, cfg.batch_tokens, random.Random(0)))
    total = max(1, int(per_epoch * cfg.epochs))
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        frac = (s - cfg.warmup) / max(1, total - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    model.train()
    bar = tqdm(total=total, initial=step, unit="step", desc="distil draft", disable=not progress)
    last_save = time.monotonic()
    ema_loss, ema_agree = None, None
    val_agree = held_out_agreement(model, val, cfg.batch_tokens, pad_id) if val else float("nan")
    epoch_batches: list[list[Example]] = []
    epoch = -1
    while step < total:
        e = step // per_epoch
        if e != epoch:
            epoch = e
            epoch_batches = batches(examples, cfg.batch_tokens, random.Random(cfg.seed * 1000 + e))
        batch = epoch_batches[step % per_epoch]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss, agree, _ = kd_loss(model, batch, pad_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema_loss = loss.item() if ema_loss is None else 0.95 * ema_loss + 0.05 * loss.item()
        ema_agree = agree if ema_agree is None else 0.95 * ema_agree + 0.05 * agree
        bar.set_postfix(loss=f"{ema_loss:.3f}", top1=f"{ema_agree:.3f}", val=f"{val_agree:.3f}", epoch=epoch)
        bar.update(1)
        if time.monotonic() - last_save > cfg.checkpoint_every_s or step == total:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)
            os.replace(tmp, ckpt)
            if val:
                val_agree = held_out_agreement(model, val, cfg.batch_tokens, pad_id)
                with (cfg.work_dir / "val.tsv").open("a") as f:
                    f.write(f"{step}\t{epoch}\t{ema_loss:.4f}\t{ema_agree:.4f}\t{val_agree:.4f}\n")
            last_save = time.monotonic()
    bar.close()
    torch.save({"model": model.state_dict(), "config": model.config.to_dict()}, final)
    return final
