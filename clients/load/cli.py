"""`tandem-load`: N edges against one verifier, side by side with cloud-only serving.

  tandem-load --clients 1 4 8 16 --out docs/capacity          # the capacity run
  tandem-load --quick                                           # 1 and 4 clients, 2 prompts: a smoke run

Records draft traces once (the real draft model on the bench prompts, against the target's
greedy answers from the real verifier), then for each mode starts a fresh verifier and runs
each client count: every client sends ``--requests-per-client`` requests back to back.

Modes:
- ``tandem``: replayed speculative edges (gamma, confidence cut-off) on the batched verifier;
- ``one-lock``: the same edges on a verifier that runs one round at a time, one transformers
  forward each (the verifier before batching);
- ``cloud``: the target decoding alone on the batched verifier (Tandem's cloud-only mode);
- ``openai``: streaming from an OpenAI-compatible server at ``--openai-url`` (vLLM's own server
  for the centralized baseline), if given.

Writes results.json, results.md and capacity.png to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from clients.bench.cpu import parse_cpus
from clients.bench.testbed import start_verifier
from clients.load import trace as traces
from clients.load.replay import RequestTiming, replay_speculative, stream_cloud, stream_openai
from clients.load.report import LoadPoint, markdown, summarise
from proxy.draft.llama_drafter import LlamaDrafter
from proxy.tokenizer import Tokenizer
from proxy.verifier_channel import VerifierChannel, websocket_connector
from proxy.verifier_client import VerifierClient
from verifier.core.chat_template import ChatTemplate
from verifier.core.cpu import read_cpu
from verifier.core.gguf import load_llama
from verifier.core.models import resolve_draft
from verifier.core.prompts import load_prompts
from verifier.core.protocol import SamplingParams, SloTargets

DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"
VERIFIER_FLAGS = {
    "tandem": [],
    "cloud": [],
    "one-lock": ["--max-batch-rounds", "1", "--torch-batching", "per-item"],
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tandem-load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--modes", default="tandem,one-lock,cloud", help="comma list: tandem, one-lock, cloud, openai")
    p.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS)
    p.add_argument("--limit", type=int, default=8, help="prompts used (balanced by category)")
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--gamma", type=int, default=4)
    p.add_argument("--confidence-threshold", type=float, default=0.3)
    p.add_argument("--tpot-slo-ms", type=float, default=200.0, help="the TPOT target of goodput and attainment")
    p.add_argument("--draft-model", default=None, help="draft GGUF whose traces the edges replay (default: the edge's)")
    p.add_argument("--verifier-cpus", default="1", help="cores the verifier is pinned to ('' = no pinning)")
    p.add_argument("--client-cpus", default="0", help="cores this load generator is pinned to ('' = none)")
    p.add_argument("--backend", choices=["torch", "vllm"], default="torch",
                   help="the verifier backend of the tandem and cloud modes (and of the trace recording); "
                   "one-lock is always today's torch verifier")
    p.add_argument("--openai-url", default=None, help="base URL of an OpenAI-compatible server (mode openai)")
    p.add_argument("--openai-model", default="SmolLM2-135M-Instruct")
    p.add_argument("--out", type=Path, default=Path("load-results"))
    p.add_argument("--quick", action="store_true", help="1 and 4 clients, 2 prompts, 24 tokens")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.limit, args.max_tokens, args.requests_per_client = [1, 4], 2, 24, 1
    return args


class Verifier:
    """A verifier process for one mode, pinned, with a client to it."""

    def __init__(self, flags: list[str], cpus: tuple[int, ...] | None, log: Path) -> None:
        self.proc, port = start_verifier(log, cpus, flags)
        self.url = f"http://127.0.0.1:{port}"

    def stats(self) -> dict[str, float]:
        return dict(httpx.get(f"{self.url}/v1/stats", timeout=10).json())

    def stop(self) -> None:
        self.proc.stop()


async def _record(args: argparse.Namespace, verifier_url: str) -> list[traces.Trace]:
    draft = resolve_draft(args.draft_model)
    tokenizer = Tokenizer(draft)
    template = ChatTemplate(tokenizer.chat_template, tokenizer.bos_text, tokenizer.eos_text)
    drafter = LlamaDrafter(load_llama(draft, 2048, 1))
    client = VerifierClient(verifier_url, 300)
    out = []
    try:
        for record in load_prompts(args.prompts, args.limit):
            prompt = tokenizer.encode(template.render(record.messages), special=True, add_bos=tokenizer.add_bos)
            target: list[int] = []
            async for chunk in client.generate(prompt, SamplingParams(), args.max_tokens,
                                               sorted(tokenizer.stop_token_ids)):
                target.extend(chunk.token_ids)
            out.append(traces.record(drafter, prompt, target, args.gamma))
    finally:
        await client.aclose()
    return out


async def _one_request(mode: str, args: argparse.Namespace, client: VerifierClient, channel: VerifierChannel,
                       http: httpx.AsyncClient | None, t: traces.Trace, slo: SloTargets) -> RequestTiming:
    try:
        if mode in ("tandem", "one-lock"):
            return await replay_speculative(channel, t, args.max_tokens, args.gamma, args.confidence_threshold, slo)
        if mode == "cloud":
            return await stream_cloud(client, t, args.max_tokens, slo)
        if http is None:
            raise RuntimeError("mode openai needs --openai-url")
        return await stream_openai(http, args.openai_model, t, args.max_tokens)
    except Exception as exc:  # noqa: BLE001 - counted as an error of this request, the run goes on
        timing = RequestTiming(time.perf_counter())
        timing.error = f"{type(exc).__name__}: {exc}"
        return timing


async def _run_point(mode: str, n: int, args: argparse.Namespace, url: str,
                     all_traces: list[traces.Trace]) -> tuple[list[RequestTiming], float]:
    client = VerifierClient(url, 600)
    http = httpx.AsyncClient(base_url=args.openai_url, timeout=600) if args.openai_url else None
    slo = SloTargets(tpot_ms=args.tpot_slo_ms)

    channels = [VerifierChannel(websocket_connector(url, 600)) for _ in range(n)]  # one connection per edge

    async def one_client(i: int) -> list[RequestTiming]:
        out = []
        for r in range(args.requests_per_client):
            out.append(await _one_request(mode, args, client, channels[i], http,
                                          all_traces[(i + r) % len(all_traces)], slo))
        return out

    try:
        start = time.perf_counter()
        per_client = await asyncio.gather(*(one_client(i) for i in range(n)))
        wall = time.perf_counter() - start
    finally:
        await client.aclose()
        for channel in channels:
            await channel.aclose()
        if http is not None:
            await http.aclose()
    return [t for c in per_client for t in c], wall


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "tandem-load " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    client_cpus = parse_cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, set(client_cpus) & os.sched_getaffinity(0) or os.sched_getaffinity(0))
    verifier_cpus = parse_cpus(args.verifier_cpus)
    modes = [m for m in args.modes.split(",") if m]
    points: list[LoadPoint] = []
    errors: dict[str, list[str]] = {}

    first = Verifier(["--backend", args.backend], verifier_cpus, args.out / "logs" / "verifier-record.log")
    try:
        print("recording draft traces ...", flush=True)
        all_traces = asyncio.run(_record(args, first.url))
    finally:
        first.stop()
    traces.save(all_traces, args.out / "traces.jsonl")
    print(f"{len(all_traces)} traces, draft {all_traces[0].draft_s_per_token * 1000:.2f} ms/token", flush=True)

    for mode in modes:
        flags = VERIFIER_FLAGS.get(mode, []) + (["--backend", args.backend] if mode in ("tandem", "cloud") else [])
        verifier = None if mode == "openai" else Verifier(flags, verifier_cpus,
                                                         args.out / "logs" / f"verifier-{mode}.log")
        try:
            url = verifier.url if verifier else ""
            asyncio.run(_run_point(mode, 1, args, url, all_traces[:1]))  # warm-up, not measured
            for n in args.clients:
                before = verifier.stats() if verifier else {}
                timings, wall = asyncio.run(_run_point(mode, n, args, url, all_traces))
                after = verifier.stats() if verifier else {}
                rows = int(after["round_rows"] - before["round_rows"] + after.get("live_rows", 0)
                           - before.get("live_rows", 0)) if verifier else None
                point = summarise(mode, n, timings, wall, args.tpot_slo_ms / 1000, rows,
                                  after.get("estimator_median_error") if verifier else None)
                points.append(point)
                errors[f"{mode}/{n}"] = sorted({t.error for t in timings if t.error})
                print(json.dumps(asdict(point)), flush=True)
        finally:
            if verifier:
                verifier.stop()

    report = {"command": command, "cpu": read_cpu().describe(), "args": {k: str(v) for k, v in vars(args).items()},
              "points": [asdict(p) for p in points], "errors": errors}
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(markdown(points, args.tpot_slo_ms, command))
    _plot(points, args.out / "capacity.png")
    print(markdown(points, args.tpot_slo_ms, command))
    return 1 if any(p.errors for p in points) else 0


def _plot(points: list[LoadPoint], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in dict.fromkeys(p.mode for p in points):
        mine = [p for p in points if p.mode == mode]
        ax1.plot([p.clients for p in mine], [p.goodput_tok_s for p in mine], marker="o", label=mode)
        ax2.plot([p.clients for p in mine], [p.tpot_p50_ms for p in mine], marker="o", label=mode)
    ax1.set_xlabel("clients")
    ax1.set_ylabel("goodput (tok/s within the TPOT SLO)")
    ax2.set_xlabel("clients")
    ax2.set_ylabel("TPOT p50 (ms)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
