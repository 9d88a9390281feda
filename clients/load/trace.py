"""Draft traces: what the real draft model proposes at every position of the target's answer.

For greedy decoding the committed text is the target's greedy continuation, whatever the
rounds, so the draft's proposals at each position are fixed: recording them once (tokens and
confidences, with the draft's measured time per token) lets a replayed edge send exactly the
rounds the real edge would.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from proxy.draft.draws import confidence
from proxy.draft.llama_drafter import LlamaDrafter


@dataclass(frozen=True)
class Trace:
    prompt_token_ids: list[int]
    target_token_ids: list[int]  # the target's greedy continuation (ends with a stop token or at the cap)
    draft_token_ids: list[list[int]]  # per position p: the draft's greedy proposals after prompt + target[:p]
    confidences: list[list[float]]  # the draft's top-1 probability for each of them
    draft_s_per_token: float  # the draft's median time per drafted token, measured while recording


def record(drafter: LlamaDrafter, prompt: list[int], target: list[int], gamma: int) -> Trace:
    """The draft's proposals of up to gamma tokens at every position of ``target``."""
    tokens: list[list[int]] = []
    confs: list[list[float]] = []
    times: list[float] = []
    for p in range(len(target)):
        ctx = prompt + target[:p]
        row_t: list[int] = []
        row_c: list[float] = []
        for _ in range(gamma):
            t0 = time.perf_counter()
            logits = drafter.sync(ctx)
            times.append(time.perf_counter() - t0)
            token = int(logits.argmax())
            row_t.append(token)
            row_c.append(confidence(logits))
            ctx = [*ctx, token]
        tokens.append(row_t)
        confs.append(row_c)
    return Trace(prompt, target, tokens, confs, statistics.median(times) if times else 0.0)


def save(traces: list[Trace], path: Path) -> None:
    path.write_text("\n".join(json.dumps(asdict(t)) for t in traces) + "\n")


def load(path: Path) -> list[Trace]:
    return [Trace(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
