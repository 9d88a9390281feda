"""Phase 1 of distillation: the target writes the training text and its own soft labels.

This module holds what both writers share (`data_torch`, batched torch; `data_llama`,
llama.cpp): the configuration, the shard schedule and the shard format.

For each batch of prompts the target writes a reply and we keep, at every reply position,
the top-k of the target's next-token logits. Shard i is written at temperature
temperatures[i % len(temperatures)]: sampled shards (0.8) give variety, greedy shards (0)
put the draft on the very text it is judged on, the target's own greedy continuations.
A shard is a deterministic function of (seed, index, temperature). Shards are written one
by one (atomic rename), so an interrupted run resumes at the next shard.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from verifier.core.chat_template import Messages


@dataclass(frozen=True)
class DataConfig:
    target_dir: Path
    out_dir: Path
    tokens: int  # reply tokens to generate in total
    seed: int
    batch_size: int = 96
    max_new_tokens: int = 160
    top_k: int = 16
    temperatures: tuple[float, ...] = (0.8, 0.0)
    # templates: prompts.build_prompts; self: the target writes the requests when asked to; list: the
    # target writes them by continuing a list of seed requests (torch writer only)
    prompt_source: str = "templates"
    # text: plain replies; json: replies in JSON mode (the target masked by response_format json_object's
    # grammar; torch writer only)
    response_format: str = "text"

    def temperature(self, shard: int) -> float:
        return self.temperatures[shard % len(self.temperatures)]


def shard_paths(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("shard-*.pt"))


def count_tokens(out_dir: Path) -> int:
    total = 0
    for p in shard_paths(out_dir):
        total += int(torch.load(p, weights_only=True)["n_tokens"])
    return total


@dataclass(frozen=True)
class ShardJob:
    """One shard still to write: the schedule both data writers follow."""

    path: Path
    prompts: list[Messages] | None  # None: the target writes them itself (prompt source self or list)
    seed: int
    temperature: float


def pending_shards(cfg: DataConfig) -> Iterator[ShardJob]:
    """The shards not written yet, in order. Shard i: prompts [i*B, (i+1)*B) of the seeded
    prompt set, seed (seed, i), temperature T[i % len(T)]; existing shards (an earlier,
    interrupted run with the same settings) are skipped."""
    from verifier.distill.prompts import build_prompts

    prompts = None
    if cfg.prompt_source == "templates":
        n_batches = (cfg.tokens // (cfg.batch_size * cfg.max_new_tokens // 2)) + 64
        prompts = build_prompts(n_batches * cfg.batch_size, cfg.seed)
    shard = -1
    while True:
        shard += 1
        path = cfg.out_dir / f"shard-{shard:05d}.pt"
        if path.exists():
            continue
        batch = prompts[shard * cfg.batch_size:(shard + 1) * cfg.batch_size] if prompts is not None else None
        yield ShardJob(path, batch, cfg.seed * 100003 + shard, cfg.temperature(shard))


def shard_record(prompt: Sequence[int], reply: Sequence[int], top_ids: Any, top_logits: Any) -> dict[str, torch.Tensor]:
    """One example: prompt and reply ids, and the target's top-k (ids, logits) at each reply position."""
    return {
        "prompt": torch.tensor(list(prompt), dtype=torch.int32),
        "reply": torch.tensor(list(reply), dtype=torch.int32),
        "top_ids": torch.as_tensor(top_ids).to(torch.int32),
        "top_logits": torch.as_tensor(top_logits).to(torch.float16),
    }


def save_shard(path: Path, records: list[dict[str, torch.Tensor]], temperature: float, backend: str) -> int:
    """Write a shard atomically; returns its reply token count."""
    n_tok = sum(int(r["reply"].numel()) for r in records)
    tmp = path.with_suffix(".tmp")
    torch.save({"records": records, "n_tokens": n_tok, "temperature": temperature, "backend": backend}, tmp)
    os.replace(tmp, path)
    return n_tok
