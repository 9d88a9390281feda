"""`tandem-draft eval`: greedy acceptance, mean accepted length and decode speed in llama.cpp."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from llama_cpp import Llama

from verifier.core.bounds import greedy_matches, mean_accepted_length
from verifier.core.chat_template import ChatTemplate
from verifier.core.gguf import last_logits, load_llama
from verifier.core.prompts import load_prompts


@dataclass
class EvalReport:
    prompts: int
    positions: int
    greedy_acceptance: float
    mean_accepted_length_gamma4: float
    draft_ms_per_token: float
    target_ms_per_token: float
    speed_ratio: float


def decode_ms(llm: Llama, prompt: list[int], n: int = 48) -> float:
    """Median milliseconds of one greedy decode step (batch 1) over ``n`` steps after ``prompt``."""
    llm.n_tokens = 0
    llm.eval(prompt)
    times = []
    tok = int(np.argmax(last_logits(llm)))
    for _ in range(n):
        t0 = time.perf_counter()
        llm.eval([tok])
        times.append(time.perf_counter() - t0)
        tok = int(np.argmax(last_logits(llm)))
    return statistics.median(times) * 1000


def evaluate(
    target: Path, draft: Path, prompts_file: Path, max_new: int = 64, threads: int | None = None
) -> EvalReport:
    tgt = load_llama(target, n_ctx=1024, threads=threads)
    drf = load_llama(draft, n_ctx=1024, threads=threads, logits_all=True)
    md = tgt.metadata
    eos = tgt.token_eos()
    template = ChatTemplate(md.get("tokenizer.chat_template"), "", "")
    all_matches: list[bool] = []
    lengths = []
    prompts = load_prompts(prompts_file)
    first_prompt: list[int] = []
    for record in prompts:
        messages = record.messages
        ids = tgt.tokenize(template.render(messages).encode(), add_bos=False, special=True)[: 1024 - max_new - 1]
        first_prompt = first_prompt or ids
        tgt.n_tokens = 0
        tgt.eval(ids)
        cont: list[int] = []
        for _ in range(max_new):
            tok = int(np.argmax(last_logits(tgt)))
            cont.append(tok)
            if tok == eos:
                break
            tgt.eval([tok])
        drf.n_tokens = 0
        drf.eval(ids + cont[:-1])
        rows = drf.scores[len(ids) - 1: len(ids) - 1 + len(cont)]
        matches = greedy_matches(rows.argmax(-1).tolist(), cont)
        all_matches.extend(matches)
        lengths.append(mean_accepted_length(matches, 4))
    d_ms = decode_ms(drf, first_prompt)
    t_ms = decode_ms(tgt, first_prompt)
    return EvalReport(
        prompts=len(prompts),
        positions=len(all_matches),
        greedy_acceptance=round(sum(all_matches) / max(1, len(all_matches)), 4),
        mean_accepted_length_gamma4=round(float(np.mean(lengths)) if lengths else 0.0, 3),
        draft_ms_per_token=round(d_ms, 3),
        target_ms_per_token=round(t_ms, 3),
        speed_ratio=round(t_ms / d_ms, 2) if d_ms else 0.0,
    )


def format_table(r: EvalReport) -> str:
    rows = [(k, str(v)) for k, v in asdict(r).items()]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)
