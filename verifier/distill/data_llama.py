"""Phase 1 on llama.cpp: the target's GGUF writes the training text, one worker per core.

Same shard schedule and format as the torch writer (`data.pending_shards`,
`data.save_shard`), but each prompt is decoded on its own by llama.cpp, in one
single-threaded worker process per core. With prompt_source "self" the target first writes
each shard's user requests itself (self-instruct), so the prompts are as varied as its
sampling rather than ~4,000 template combinations. The soft labels come from the very
weights the verifier serves (the HF target is converted from this GGUF); the batched torch
writer (`data_torch`) is faster on these machines, most of all for self-instruct.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
from llama_cpp import Llama

from verifier.core.chat_template import ChatTemplate, Messages
from verifier.core.gguf import last_logits, load_llama
from verifier.core.sampling import softmax
from verifier.distill.data import (
    DataConfig,
    ShardJob,
    count_tokens,
    pending_shards,
    save_shard,
    shard_paths,
    shard_record,
)
from verifier.distill.prompts import SYSTEMS, clean_request, conversation, pick, self_instruct_request


def top_k_desc(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, values) of the k largest logits, largest first."""
    idx = np.argpartition(logits, -k)[-k:]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    return idx, logits[idx]


def next_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    p = softmax(logits, temperature)
    return int(rng.choice(p.size, p=p))


def decode(llm: Llama, prompt: list[int], temperature: float, rng: np.random.Generator, max_new: int,
           top_k: int) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """The target's reply to prompt, with its top-k (ids, logits) at every reply position."""
    eos = llm.token_eos()
    llm.n_tokens = 0
    llm.eval(prompt)
    reply: list[int] = []
    top_ids, top_vals = [], []
    for _ in range(max_new):
        logits = last_logits(llm)
        ids, vals = top_k_desc(logits, top_k)
        top_ids.append(ids)
        top_vals.append(vals)
        tok = next_token(logits, temperature, rng)
        reply.append(tok)
        if tok == eos or len(prompt) + len(reply) >= llm.n_ctx():
            break
        llm.eval([tok])
    return reply, top_ids, top_vals


def self_instruct_prompts(llm: Llama, template: ChatTemplate, rng: np.random.Generator,
                          n: int) -> list[Messages]:
    """n chat conversations whose user requests the target wrote itself (temperature 0.9)."""
    out: list[Messages] = []
    for _ in range(10 * n):
        if len(out) == n:
            return out
        instruction = conversation(self_instruct_request(rng), None)
        ids = llm.tokenize(template.render(instruction).encode(), add_bos=False, special=True)
        reply, _, _ = decode(llm, ids, 0.9, rng, 64, 1)
        text = llm.detokenize([t for t in reply if t != llm.token_eos()]).decode(errors="ignore")
        request = clean_request(text)
        if request:
            out.append(conversation(request, pick(rng, SYSTEMS)))
    if len(out) < n:
        raise RuntimeError(f"the target wrote only {len(out)} usable requests in {10 * n} tries")
    return out


def _write_shard(task: tuple[str, ShardJob, int, int, int]) -> int:
    """One shard, in a worker process (loading the 135M GGUF takes well under a second).

    Without given prompts the target first writes n_prompts requests itself (self-instruct)."""
    target_gguf, job, n_prompts, max_new, top_k = task
    llm = load_llama(target_gguf, n_ctx=1024, threads=1)
    template = ChatTemplate(llm.metadata.get("tokenizer.chat_template"), "", "")
    rng = np.random.default_rng(job.seed)
    prompts = job.prompts if job.prompts is not None else self_instruct_prompts(llm, template, rng, n_prompts)
    records = []
    for messages in prompts:
        prompt = llm.tokenize(template.render(messages).encode(), add_bos=False, special=True)
        reply, top_ids, top_vals = decode(llm, prompt, job.temperature, rng, max_new, top_k)
        records.append(shard_record(prompt, reply, np.stack(top_ids), np.stack(top_vals)))
    return save_shard(job.path, records, job.temperature, "llama.cpp")


def generate_data_llama(cfg: DataConfig, target_gguf: Path, workers: int, progress: bool = True) -> list[Path]:
    from tqdm import tqdm

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    done = count_tokens(cfg.out_dir)
    if done >= cfg.tokens:
        return shard_paths(cfg.out_dir)
    bar = tqdm(total=cfg.tokens, initial=done, unit="tok", desc="target writes data (llama.cpp)",
               disable=not progress)
    jobs = pending_shards(cfg)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        while done < cfg.tokens:
            tasks = [(str(target_gguf), next(jobs), cfg.batch_size, cfg.max_new_tokens, cfg.top_k)
                     for _ in range(workers)]
            for n in pool.imap(_write_shard, tasks):
                done += n
                bar.update(n)
    bar.close()
    return shard_paths(cfg.out_dir)
