"""`python -m clients.bench.features`: does speculation keep its acceptance with the OpenAI
features that shape the output (JSON mode, penalties) on?

Starts a verifier and an edge on loopback (no emulated link: this measures acceptance and the
local speed, not the network), then sends every bench prompt once per feature set, the sets
interleaved prompt by prompt so drift hits them alike: greedy, speculative, the edge's default
gamma. Prints per set the draft acceptance (accepted / drafted over all requests, and the
median per request), the median tokens/s, and both as ratios to the plain set. With several
``--drafts`` one edge per draft shares the verifier, and the drafts are interleaved too; with
several ``--modes`` (``tandem.mode``) the modes are interleaved, and each set's tok/s is also
given as a ratio to the first mode's. The ``sampled`` set is temperature 0.8, top_p 0.95, a
seed per prompt. A set the verifier refuses in a mode (a 400) is reported as refused.

    .venv/bin/python -m clients.bench.features --limit 12 --max-tokens 64
    .venv/bin/python -m clients.bench.features --drafts models/smollm2-135m-draft.gguf NEW.gguf
    .venv/bin/python -m clients.bench.features --backend vllm --modes cloud speculative --limit 8
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
    "sampled": {"temperature": 0.8, "top_p": 0.95},
}


def run(url: str, messages: list[dict[str, Any]], fields: dict[str, Any], max_tokens: int,
        mode: str = "speculative", seed: int = 0) -> dict[str, float] | None:
    """One request's acceptance and speed; None when the verifier refused it (a 400)."""
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
        "model": MODEL, "messages": messages, "temperature": 0, "max_tokens": max_tokens, "seed": seed,
        "tandem": {"mode": mode}, **fields})
    elapsed = time.perf_counter() - t0
    if r.status_code == 400:
        return None
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
    parser.add_argument("--backend", choices=["torch", "vllm"], default="torch", help="the verifier's backend")
    parser.add_argument("--modes", nargs="+", default=["speculative"], choices=["speculative", "cloud", "auto"],
                        help="tandem.mode of the requests; several are interleaved")
    args = parser.parse_args(argv)
    prompts = load_prompts(PROMPTS)[: args.limit]
    logs = Path(tempfile.mkdtemp(prefix="tandem-features-"))
    verifier, vport = start_verifier(logs / "verifier.log", None, ["--threads", "1", "--backend", args.backend])
    edges: list[tuple[str, Process, str]] = []
    results: dict[tuple[str, str, str], list[dict[str, float] | None]] = {}
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
                    for mode in args.modes:
                        results.setdefault((name, mode, feature), []).append(
                            run(url, prompt.messages, fields, args.max_tokens, mode, seed=i))
            print(f"prompt {i + 1}/{len(prompts)} done", file=sys.stderr, flush=True)
    finally:
        for _, edge, _ in edges:
            stop_process(edge.proc)
        stop_process(verifier.proc)

    def acceptance(rs: list[dict[str, float]]) -> float:
        return sum(r["accepted"] for r in rs) / max(1.0, sum(r["drafted"] for r in rs))

    def speed(rs: list[dict[str, float]]) -> float:
        return statistics.median(r["tok_s"] for r in rs)

    first = args.modes[0]
    print(f"\n| draft | mode | feature set | acceptance (all) | median acceptance | x plain | median tok/s | x plain "
          f"| x {first} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _, _ in edges:
        for mode in args.modes:
            plain = [r for r in results[(name, mode, "plain")] if r is not None]
            for feature in FEATURES:
                if any(r is None for r in results[(name, mode, feature)]):
                    print(f"| {Path(name).name} | {mode} | {feature} | refused (400) | | | | | |")
                    continue
                rs = [r for r in results[(name, mode, feature)] if r is not None]
                acc = acceptance(rs)
                med = statistics.median(r["accepted"] / r["drafted"] if r["drafted"] else 0.0 for r in rs)
                ref = [r for r in results[(name, first, feature)] if r is not None]
                vs_first = f"{speed(rs) / speed(ref):.2f}" if ref else "-"
                vs_plain_acc = f"{acc / acceptance(plain):.2f}" if plain and acceptance(plain) else "-"
                vs_plain = f"{speed(rs) / speed(plain):.2f}" if plain else "-"
                print(f"| {Path(name).name} | {mode} | {feature} | {acc:.3f} | {med:.3f} | {vs_plain_acc} "
                      f"| {speed(rs):.1f} | {vs_plain} | {vs_first} |")
    drafts = f" --drafts {' '.join(args.drafts)}" if args.drafts != [None] else ""
    print(f"\n{len(prompts)} prompts x {args.max_tokens} tokens, loopback, verifier backend {args.backend}; "
          f"logs: {logs}")
    print(f"reproduce: .venv/bin/python -m clients.bench.features --limit {args.limit} --max-tokens {args.max_tokens}"
          f" --backend {args.backend} --modes {' '.join(args.modes)}{drafts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
