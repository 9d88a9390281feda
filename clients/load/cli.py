"""`tandem-load`: N edges against one verifier, side by side with cloud-only serving.

  tandem-load --clients 1 4 8 16 --out docs/capacity          # the capacity run
  tandem-load --quick                                           # 1 and 4 clients, 2 prompts: a smoke run

Records draft traces once (the real draft model on the bench prompts, against the target's
greedy answers from the real verifier), then starts a verifier of its own for each mode and
runs each client count: every client sends ``--requests-per-client`` requests back to back.
Each repeat (``--repeats``) is one pass over the client counts, and at each client count the
modes take turns in a carry-over balanced order (each first, and after each other, as often);
the tables give each figure's median and range across repeats, and goodput and SLO attainment at
each TPOT SLO (``--tpot-slo-ms``).

Modes:
- ``tandem``: replayed speculative edges (gamma, confidence cut-off) on the batched verifier;
- ``one-lock``: the same edges on a verifier that runs one round at a time, one transformers
  forward each (the verifier before batching);
- ``cloud``: the target decoding alone on the batched verifier (Tandem's cloud-only mode);
- ``openai``: streaming from an OpenAI-compatible server at ``--openai-url`` (vLLM's own server
  for the centralized baseline), if given; it must serve the same target with the numerics of the
  recording backend (``--backend``), as its answers are checked against the recorded ones too.

Every mode checks each answer's token ids against the target's recorded greedy answer for that
prompt. Writes results.json, results.md and capacity.png to --out; exits with status 1 when any
request failed, naming each answer that was not the target's (LOSSLESS CHECK FAILED) on stderr.
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
from clients.bench.spread import balanced
from clients.bench.testbed import start_verifier
from clients.load import trace as traces
from clients.load.replay import ReplayMismatch, RequestTiming, replay_speculative, stream_cloud, stream_openai
from clients.load.report import LoadPoint, across_repeats, lossless_failures, markdown, summarise
from proxy.cloud.channel import VerifierChannel, websocket_connector
from proxy.cloud.client import VerifierClient
from proxy.draft.llama_drafter import LlamaDrafter
from proxy.tokenizer import Tokenizer
from verifier.core.chat_template import ChatTemplate
from verifier.core.cpu import read_cpu
from verifier.core.gguf import load_llama
from verifier.core.models import resolve_draft
from verifier.core.prompts import load_prompts
from verifier.core.protocol import Generation, SloTargets

DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"
VERIFIER_FLAGS = {
    "tandem": [],
    "cloud": [],
    "one-lock": ["--backend", "torch", "--max-batch-rounds", "1", "--torch-batching", "per-item"],
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
    p.add_argument("--tpot-slo-ms", type=float, nargs="+", default=[150.0, 250.0, 400.0],
                   help="TPOT targets (ms) at which goodput and SLO attainment are reported (the verifier's own "
                        "default target is 250 ms)")
    p.add_argument("--session-tpot-ms", type=float, default=None,
                   help="the TPOT target each replayed session asks the verifier to schedule for "
                        "(default: none, the verifier's own default, 250 ms)")
    p.add_argument("--repeats", type=int, default=None,
                   help="passes over the client counts (default 3; 1 with --quick)")
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
        args.repeats = 1 if args.repeats is None else args.repeats
    args.repeats = 3 if args.repeats is None else args.repeats
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
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


def _measure(mode: str, n: int, rep: int, args: argparse.Namespace, verifier: Verifier | None,
             all_traces: list[traces.Trace]) -> tuple[LoadPoint, list[RequestTiming]]:
    """One point: ``n`` clients of ``mode``, with the verifier's rows and estimator error read
    around it."""
    before = verifier.stats() if verifier else {}
    timings, wall = asyncio.run(_run_point(mode, n, args, verifier.url if verifier else "", all_traces))
    after = verifier.stats() if verifier else {}
    rows = int(after["round_rows"] - before["round_rows"] + after.get("live_rows", 0)
               - before.get("live_rows", 0)) if verifier else None
    point = summarise(mode, n, timings, wall, args.tpot_slo_ms, rows,
                      after.get("estimator_median_error") if verifier else None, repeat=rep)
    return point, timings


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
            async for chunk in client.generate(Generation(prompt_token_ids=prompt), args.max_tokens,
                                               sorted(tokenizer.stop_token_ids)):
                target.extend(chunk.token_ids)
            out.append(traces.record(drafter, prompt, target, args.gamma))
    finally:
        await client.aclose()
    return out


async def one_request(mode: str, args: argparse.Namespace, client: VerifierClient, channel: VerifierChannel,
                      http: httpx.AsyncClient | None, t: traces.Trace, slo: SloTargets, prompt: int) -> RequestTiming:
    """One request of ``mode`` for trace ``prompt``; a failure is recorded on its timing, an answer
    that is not the target's as a ``mismatch`` too."""
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
        if isinstance(exc, ReplayMismatch):
            timing.mismatch = f"{mode}, prompt {prompt}: {exc}"
        return timing


async def _run_point(mode: str, n: int, args: argparse.Namespace, url: str,
                     all_traces: list[traces.Trace]) -> tuple[list[RequestTiming], float]:
    client = VerifierClient(url, 600)
    http = httpx.AsyncClient(base_url=args.openai_url, timeout=600) if args.openai_url else None
    slo = SloTargets(tpot_ms=args.session_tpot_ms)

    channels = [VerifierChannel(websocket_connector(url, 600)) for _ in range(n)]  # one connection per edge

    async def one_client(i: int) -> list[RequestTiming]:
        out = []
        for r in range(args.requests_per_client):
            k = (i + r) % len(all_traces)
            out.append(await one_request(mode, args, client, channels[i], http, all_traces[k], slo, k))
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


def record_traces(args: argparse.Namespace, verifier_cpus: tuple[int, ...] | None) -> list[traces.Trace]:
    """The draft traces every edge replays, recorded against a verifier of their own (stopped after)
    and saved to ``--out``/traces.jsonl."""
    first = Verifier(["--backend", args.backend], verifier_cpus, args.out / "logs" / "verifier-record.log")
    try:
        print("recording draft traces ...", flush=True)
        all_traces = asyncio.run(_record(args, first.url))
    finally:
        first.stop()
    traces.save(all_traces, args.out / "traces.jsonl")
    print(f"{len(all_traces)} traces, draft {all_traces[0].draft_s_per_token * 1000:.2f} ms/token", flush=True)
    return all_traces


def run_all(args: argparse.Namespace, modes: list[str], verifier_cpus: tuple[int, ...] | None,
            all_traces: list[traces.Trace]) -> tuple[list[LoadPoint], dict[str, list[str]], list[str]]:
    """Every mode at every client count, repeat by repeat, each mode on a verifier of its own after
    an unmeasured warm-up: the points, the errors of each mode and client count, and the lossless
    failures (warm-ups included)."""
    points: list[LoadPoint] = []
    errors: dict[str, list[str]] = {}
    mismatches: list[str] = []
    # every mode's verifier is up for the whole run, so the modes take turns: at each (repeat, client
    # count) they run in a carry-over balanced order (clients.bench.spread.balanced) (nothing else runs beside a point)
    verifiers: dict[str, Verifier | None] = {}
    try:
        for mode in modes:
            flags = VERIFIER_FLAGS.get(mode, []) + (["--backend", args.backend] if mode in ("tandem", "cloud") else [])
            verifier = None if mode == "openai" else Verifier(flags, verifier_cpus,
                                                             args.out / "logs" / f"verifier-{mode}.log")
            verifiers[mode] = verifier
            warm, _ = asyncio.run(_run_point(mode, 1, args, verifier.url if verifier else "", all_traces[:1]))
            mismatches += lossless_failures(warm, f"{mode} warm-up")  # the warm-up is not measured
        turn = 0
        for rep in range(args.repeats):
            for n in args.clients:
                for mode in balanced(modes, turn):
                    point, timings = _measure(mode, n, rep, args, verifiers[mode], all_traces)
                    points.append(point)
                    key = f"{mode}/{n}"  # the errors of every repeat
                    errors[key] = sorted({*errors.get(key, []), *(t.error for t in timings if t.error)})
                    mismatches += lossless_failures(timings, f"{mode}/{n} clients, repeat {rep}")
                    print(json.dumps(asdict(point)), flush=True)
                turn += 1
    finally:
        for verifier in verifiers.values():
            if verifier:
                verifier.stop()
    return points, errors, mismatches


def write_report(command: str, args: argparse.Namespace, points: list[LoadPoint], errors: dict[str, list[str]],
                 mismatches: list[str], load_start: tuple[float, float, float]) -> None:
    """results.json, results.md and capacity.png in ``--out``; the Markdown tables printed too."""
    report = {"command": command, "cpu": read_cpu().describe(),
              # 1, 5 and 15 minute load averages: other work on the machine skews every timing
              "load_average_start": [round(x, 2) for x in load_start],
              "load_average_end": [round(x, 2) for x in os.getloadavg()],
              "args": {k: str(v) for k, v in vars(args).items()}, "tpot_slos_ms": args.tpot_slo_ms,
              "repeats": args.repeats, "summaries": [s.as_dict() for s in across_repeats(points)],
              "points": [asdict(p) for p in points], "errors": errors, "lossless_ok": not mismatches,
              "mismatches": mismatches}
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(markdown(points, args.tpot_slo_ms, command))
    _plot(points, args.out / "capacity.png")
    print(markdown(points, args.tpot_slo_ms, command))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "tandem-load " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    client_cpus = parse_cpus(args.client_cpus)
    if client_cpus:
        os.sched_setaffinity(0, set(client_cpus) & os.sched_getaffinity(0) or os.sched_getaffinity(0))
    verifier_cpus = parse_cpus(args.verifier_cpus)
    modes = [m for m in args.modes.split(",") if m]
    load_start = os.getloadavg()
    all_traces = record_traces(args, verifier_cpus)
    points, errors, mismatches = run_all(args, modes, verifier_cpus, all_traces)
    write_report(command, args, points, errors, mismatches, load_start)
    return exit_status(points, mismatches)


def exit_status(points: list[LoadPoint], mismatches: list[str]) -> int:
    """1 when any answer was not the target's (each named on stderr) or any request failed."""
    for line in mismatches:
        print(f"LOSSLESS CHECK FAILED: {line}", file=sys.stderr)
    return 1 if mismatches or any(p.errors for p in points) else 0


def _plot(points: list[LoadPoint], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = across_repeats(points)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for mode in dict.fromkeys(s.mode for s in summaries):
        mine = [s for s in summaries if s.mode == mode]
        x = [s.clients for s in mine]
        for slo, style in zip(mine[0].goodput_tok_s, ("-", "--", ":", "-.") * 4):
            ax1.plot(x, [s.goodput_tok_s[slo].median for s in mine], linestyle=style, marker="o",
                     label=f"{mode} @{slo:g} ms")
        ax2.plot(x, [s.tpot_p50_ms.median for s in mine], marker="o", label=mode)
    ax1.set_xlabel("clients")
    ax1.set_ylabel("goodput (tok/s within each TPOT SLO, median)")
    ax2.set_xlabel("clients")
    ax2.set_ylabel("TPOT p50 (ms, median over repeats)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
