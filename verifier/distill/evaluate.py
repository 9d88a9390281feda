"""`tandem-draft eval`: greedy acceptance, mean accepted length and decode speed in llama.cpp."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from llama_cpp import Llama

from proxy.chat_template import ChatTemplate
from proxy.draft.llama_drafter import last_logits
from verifier.distill.metrics import greedy_matches, mean_accepted_length


@dataclass
class EvalReport:
    prompts: int
    positions: int
    greedy_acceptance: float
    mean_accepted_length_gamma4: float
    draft_ms_per_token: float
    target_ms_per_token: float
    speed_ratio: float


def load_prompts(path: Path) -> list[list[dict[str, str]]]:
    """JSONL with "messages" or "prompt" per line, or plain text (one user prompt per line)."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            obj = json.loads(line)
            out.append(obj["messages"] if "messages" in obj else [{"role": "user", "content": obj["prompt"]}])
        else:
            out.append([{"role": "user", "content": line}])
    return out


def _decode_ms(llm: Llama, prompt: list[int], n: int = 48) -> float:
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
    tgt = Llama(str(target), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    drf = Llama(str(draft), n_ctx=1024, n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    md = tgt.metadata
    eos = tgt.token_eos()
    template = ChatTemplate(md.get("tokenizer.chat_template"), "", "")
    all_matches: list[bool] = []
    lengths = []
    prompts = load_prompts(prompts_file)
    first_prompt: list[int] = []
    for messages in prompts:
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
    d_ms = _decode_ms(drf, first_prompt)
    t_ms = _decode_ms(tgt, first_prompt)
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
