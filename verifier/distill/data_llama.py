"""Phase 1 on llama.cpp: the target's GGUF writes the training text, one worker per core.

Same shard format and schedule as `data.generate_data` (shard i: prompts
[i*B, (i+1)*B) of the seeded prompt set, temperature T[i % len(T)]), but each prompt is
decoded on its own by llama.cpp, one single-threaded worker process per core. On these
2-core machines that writes ~2.5x more tokens per minute than batched torch generation
in bf16, and the soft labels come from the very weights the verifier serves (the HF
target is converted from this GGUF).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import torch

from verifier.distill.data import DataConfig


def top_k_desc(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, values) of the k largest logits, largest first."""
    idx = np.argpartition(logits, -k)[-k:]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    return idx, logits[idx]


def next_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(p.size, p=p / p.sum()))


def _write_shard(job: tuple[str, Path, list[list[dict[str, str]]], int, float, int, int]) -> int:
    """One shard, in a worker process (loading the 135M GGUF takes well under a second)."""
    target_gguf, path, prompts, seed, temperature, max_new, top_k = job
    from llama_cpp import Llama

    from proxy.chat_template import ChatTemplate

    llm = Llama(target_gguf, n_ctx=1024, n_threads=1, n_threads_batch=1, verbose=False)
    template = ChatTemplate(llm.metadata.get("tokenizer.chat_template"), "", "")
    eos = llm.token_eos()
    rng = np.random.default_rng(seed)
    records = []
    n_tok = 0
    for messages in prompts:
        prompt = llm.tokenize(template.render(messages).encode(), add_bos=False, special=True)
        llm.n_tokens = 0
        llm.eval(prompt)
        reply: list[int] = []
        top_ids, top_vals = [], []
        for _ in range(max_new):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).copy()
            ids, vals = top_k_desc(logits, top_k)
            top_ids.append(ids)
            top_vals.append(vals)
            tok = next_token(logits, temperature, rng)
            reply.append(tok)
            if tok == eos or len(prompt) + len(reply) >= llm.n_ctx():
                break
            llm.eval([tok])
        records.append({
            "prompt": torch.tensor(prompt, dtype=torch.int32),
            "reply": torch.tensor(reply, dtype=torch.int32),
            "top_ids": torch.from_numpy(np.stack(top_ids).astype(np.int32)),
            "top_logits": torch.from_numpy(np.stack(top_vals).astype(np.float16)),
        })
        n_tok += len(reply)
    tmp = path.with_suffix(".tmp")
    torch.save({"records": records, "n_tokens": n_tok, "temperature": temperature, "backend": "llama.cpp"}, tmp)
    os.replace(tmp, path)
    return n_tok


def generate_data_llama(cfg: DataConfig, target_gguf: Path, workers: int, progress: bool = True) -> list[Path]:
    from tqdm import tqdm

    from verifier.distill.data import count_tokens, shard_paths
    from verifier.distill.prompts import build_prompts

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    done = count_tokens(cfg.out_dir)
    if done >= cfg.tokens:
        return shard_paths(cfg.out_dir)
    n_batches = (cfg.tokens // (cfg.batch_size * cfg.max_new_tokens // 2)) + 64
    prompts = build_prompts(n_batches * cfg.batch_size, cfg.seed)
    bar = tqdm(total=cfg.tokens, initial=done, unit="tok", desc="target writes data (llama.cpp)",
               disable=not progress)
    shard = -1
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        while done < cfg.tokens:
            jobs = []
            while len(jobs) < workers:
                shard += 1
                path = cfg.out_dir / f"shard-{shard:05d}.pt"
                if path.exists():
                    continue
                jobs.append((str(target_gguf), path, prompts[shard * cfg.batch_size:(shard + 1) * cfg.batch_size],
                             cfg.seed * 100003 + shard, cfg.temperature(shard), cfg.max_new_tokens, cfg.top_k))
            for n in pool.imap(_write_shard, jobs):
                done += n
                bar.update(n)
    bar.close()
    return shard_paths(cfg.out_dir)
