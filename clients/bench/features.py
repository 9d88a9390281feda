"""`python -m clients.bench.features`: does speculation keep its acceptance with the OpenAI
features that shape the output (JSON mode, penalties) on?

Starts a verifier and an edge on loopback (no emulated link: this measures acceptance and the
local speed, not the network), then sends every bench prompt once per feature set, the sets
interleaved prompt by prompt so drift hits them alike: greedy, speculative, the edge's default
gamma. Prints per set the draft acceptance (accepted / drafted over all requests, and the
median per request), the median tokens/s, and both as ratios to the plain set. With several
``--drafts`` one edge per draft shares the verifier, and the drafts are interleaved too.

    .venv/bin/python -m clients.bench.features --limit 12 --max-tokens 64
    .venv/bin/python -m clients.bench.features --drafts models/smollm2-135m-draft.gguf NEW.gguf
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from clients.bench.testbed import Process, start_verifier
from clients.procs import free_port, stop_process, wait_healthy
from verifier.core.prompts import load_prompts

MODEL = "SmolLM2-135M-Instruct"
PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"
FEATURES: dict[str, dict[str, Any]] = {
    "plain": {},
    "json_object": {"response_format": {"type": "json_object"}},
    "penalties": {"frequency_penalty": 0.5, "presence_penalty": 0.3, "repetition_penalty": 1.1},
    "json+penalties": {"response_format": {"type": "json_object"}, "frequency_penalty": 0.5,
                       "presence_penalty": 0.3},
}


def run(url: str, messages: list[dict[str, Any]], fields: dict[str, Any], max_tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
        "model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens,
        "tandem": {"mode": "speculative"}, **fields})
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    body = r.json()
    stats = body["tandem"]
    return {"accepted": stats["accepted"], "drafted": stats["drafted"],
            "tokens": body["usage"]["completion_tokens"], "tok_s": body["usage"]["completion_tokens"] / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--drafts", nargs="+", default=[None], metavar="GGUF",
                        help="draft models to compare, one edge each (default: the edge's default draft)")
    args = parser.parse_args(argv)
    prompts = load_prompts(PROMPTS)[: args.limit]
    logs = Path(tempfile.mkdtemp(prefix="tandem-features-"))
    verifier, vport = start_verifier(logs / "verifier.log", None, ["--threads", "1"])
    edges: list[tuple[str, Process, str]] = []
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for i, draft in enumerate(args.drafts):
            eport = free_port()
            extra = ["--draft-model", draft] if draft else []
            edge = Process(["-m", "proxy.cli", "--port", str(eport), "--verifier-url", f"http://127.0.0.1:{vport}",
                            "--threads", "1", *extra], logs / f"edge-{i}.log", None)
            edges.append((draft or "default draft", edge, f"http://127.0.0.1:{eport}"))
        for _, edge, url in edges:
            wait_healthy(url, edge.proc, "edge")
            run(url, prompts[0].messages, {}, 8)  # warm-up
        for i, prompt in enumerate(prompts):
            for feature, fields in FEATURES.items():
                for name, _, url in edges:
                    results.setdefault((name, feature), []).append(run(url, prompt.messages, fields, args.max_tokens))
            print(f"prompt {i + 1}/{len(prompts)} done", file=sys.stderr, flush=True)
    finally:
        for _, edge, _ in edges:
            stop_process(edge.proc)
        stop_process(verifier.proc)

    def acceptance(rs: list[dict[str, float]]) -> float:
        return sum(r["accepted"] for r in rs) / max(1.0, sum(r["drafted"] for r in rs))

    print("\n| draft | feature set | acceptance (all) | median acceptance | x plain | median tok/s | x plain |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in edges:
        base_acc = acceptance(results[(name, "plain")])
        base_speed = statistics.median(r["tok_s"] for r in results[(name, "plain")])
        for feature in FEATURES:
            rs = results[(name, feature)]
            acc = acceptance(rs)
            med = statistics.median(r["accepted"] / r["drafted"] if r["drafted"] else 0.0 for r in rs)
            speed = statistics.median(r["tok_s"] for r in rs)
            print(f"| {Path(name).name} | {feature} | {acc:.3f} | {med:.3f} | {acc / base_acc:.2f} | {speed:.1f} "
                  f"| {speed / base_speed:.2f} |")
    drafts = f" --drafts {' '.join(args.drafts)}" if args.drafts != [None] else ""
    print(f"\n{len(prompts)} prompts x {args.max_tokens} tokens, greedy, speculative, loopback; logs: {logs}")
    print(f"reproduce: .venv/bin/python -m clients.bench.features --limit {args.limit} --max-tokens {args.max_tokens}"
          f"{drafts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
