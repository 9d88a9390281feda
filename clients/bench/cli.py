"""`tandem-bench`: run the real edge and verifier across emulated networks, side by side.

  tandem-bench --quick                                      # LAN, 3 prompts, 32 tokens (< 5 min)
  tandem-bench --scenario lan broadband mobile dynamic outage iot --max-tokens 96   # full suite

Each repeat (--repeats) is one pass over the prompts with every mode, the modes of each
(prompt, repeat) in a carry-over balanced order (``clients.bench.spread.balanced``: each mode
first, and right after each other mode, equally often); tokens/s is reported per repeat with its median
and spread, and as a ratio to the baseline mode (--baseline) taken repeat by repeat
(``clients.bench.repeats``), per mode and per prompt category. Writes results.json, results.md,
tokens_per_s.png and latency_cdf.png to --out. Every lossless mode's greedy output token ids (and
text) are checked against cloud-only's for the same prompt in the same repeat
(``clients.bench.identity``); any difference, or a result without token ids, is printed and the
command exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.bench.cpu import DutyCycle, cpu_seconds, parse_cpus
from clients.bench.identity import Mismatch
from clients.bench.identity import mismatches as lossless_mismatches
from clients.bench.measure import MODES, Mode, RequestResult, run_request
from clients.bench.repeats import scenario_summary
from clients.bench.report import markdown, write
from clients.bench.scenario import Scenario, load_scenario
from clients.bench.spread import balanced
from clients.bench.testbed import Process, RelayThread, Testbed
from verifier.core.cpu import read_cpu
from verifier.core.prompts import PromptRecord, load_prompts

DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"


def schedule(prompts: int, repeats: int, modes: list[Mode]) -> list[tuple[int, int, list[Mode]]]:
    """(repeat, prompt, modes in the order they run) for every run, in run order: each repeat one
    pass over the prompts, the order of the modes the carry-over balanced one of
    ``clients.bench.spread.balanced`` at index ``prompt * repeats + repeat``, so that it changes
    between the repeats of one prompt too."""
    # every mode goes first as often and follows every other mode as often: vLLM keeps polling its
    # core for a while after a request, which slowed whatever ran next there (in docs/bench-v4 every
    # mode's first token came 110-160 ms later right after a ``vllm-serve`` request, and the rotation
    # then used made ``tandem`` follow it more often than ``cloud``)
    return [(r, p, balanced(modes, p * repeats + r)) for r in range(repeats) for p in range(prompts)]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tandem-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=None, help="scenario names (clients/scenarios) or TOML paths")
    p.add_argument("--modes", default="cloud,edge,vanilla,tandem", help=f"comma list of {sorted(MODES)}")
    p.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="JSONL: category, messages")
    p.add_argument("--limit", type=int, default=None, help="use this many prompts (balanced by category)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=None,
                   help="passes over the prompts, each with every mode (default 3; 1 with --quick)")
    p.add_argument("--baseline", default=None,
                   help="the mode every mode's tokens/s is divided by, repeat by repeat (default: vllm-serve "
                        "when it runs, else cloud); run too if --modes lacks it")
    p.add_argument("--gamma", type=int, default=4, help="the edge's default draft length (the 'tandem' mode)")
    p.add_argument("--settle-s", type=float, default=1.0,
                   help="idle seconds before each measured request, so what the last one left running (vLLM polls "
                        "its core for a while after a request) does not slow the next")
    p.add_argument("--draft-model", default=None, help="draft GGUF (default: the edge's default)")
    p.add_argument("--alt-draft", default="target",
                   help="draft GGUF of the *-alt modes (compare two drafts side by side); "
                        "'target' = the target's own GGUF")
    p.add_argument("--predictor", type=Path, default=None,
                   help="rejection predictor for the *-predictor modes (a file from `tandem-draft fit-predictor`)")
    p.add_argument("--verifier-backend", choices=["torch", "vllm"], default=default_backend(),
                   help="the verifier's backend (default: vllm where installed, the strongest cloud baseline)")
    p.add_argument("--verifier-cpus", default="1", help="cores the verifier is pinned to ('' = no pinning)")
    p.add_argument("--edge-cpus", default="0", help="cores the edge is pinned to, unless a scenario says")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quick", action="store_true", help="LAN only, 3 prompts, 32 tokens: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.scenario = args.scenario or ["lan"]
        args.limit = args.limit or 3
        args.max_tokens = min(args.max_tokens, 32)
        args.repeats = 1 if args.repeats is None else args.repeats
    args.scenario = args.scenario or ["lan", "broadband", "mobile"]
    args.repeats = 3 if args.repeats is None else args.repeats
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    names = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in [*names, args.baseline or "cloud"] if m not in MODES]:
        p.error(f"unknown mode(s) {unknown}: choose from {sorted(MODES)}")
    args.baseline = args.baseline or ("vllm-serve" if "vllm-serve" in names else "cloud")
    return args


def default_backend() -> str:
    return "vllm" if importlib.util.find_spec("vllm") is not None else "torch"


def edge_cpu_reader(pid: int) -> Callable[[], float]:
    return lambda: cpu_seconds(pid)


def target(m: Mode, edges: dict[str, tuple[Process, DutyCycle, str]], relay: RelayThread,
           vllm_relay: RelayThread | None) -> tuple[str, Any, Callable[[], float]]:
    """Where a mode's requests go, the link counters they cross, and the reader of the CPU they use."""
    if m.draft == "vllm" and vllm_relay is not None:
        return f"http://127.0.0.1:{vllm_relay.port}", vllm_relay.counters, lambda: 0.0
    edge, _, url = edges[m.draft]
    return url, relay.counters, edge_cpu_reader(edge.pid)


def _draft_path(name: str) -> str:
    from verifier.core.models import resolve_draft

    return str(resolve_draft(name))


def run_modes(args: argparse.Namespace) -> list[Mode]:
    """The modes of ``--modes``, with cloud-only first where a lossless mode needs its answers and
    the baseline first where ``--modes`` lacks it."""
    modes = [MODES[m] for m in args.modes.split(",") if m]
    if any(m.lossless for m in modes) and "cloud" not in [m.name for m in modes]:
        modes.insert(0, MODES["cloud"])  # the reference every lossless mode is checked against
    if args.baseline not in [m.name for m in modes]:
        modes.insert(0, MODES[args.baseline])  # the reference of every ratio
    return modes


def run_all(bed: Testbed, args: argparse.Namespace, scenarios: list[Scenario], prompts: list[PromptRecord],
            modes: list[Mode], drafts: dict[str, str | None]) -> list[RequestResult]:
    """Every scenario in turn against one verifier (and one vLLM server, where a mode streams from
    it), behind a progress bar; the testbed is stopped at the end, whatever happens."""
    from tqdm import tqdm

    results: list[RequestResult] = []
    bar = tqdm(total=len(scenarios) * len(prompts) * len(modes) * args.repeats, unit="req", desc="bench")
    try:
        bar.set_postfix_str("starting verifier")
        bed.start_verifier()
        vllm_port = bed.start_vllm_server() if any(m.draft == "vllm" for m in modes) else 0
        for sc in scenarios:
            results += run_scenario(sc, bed, vllm_port, args, prompts, modes, drafts, bar)
    finally:
        bar.close()
        bed.stop()
    return results


def run_scenario(sc: Scenario, bed: Testbed, vllm_port: int, args: argparse.Namespace, prompts: list[PromptRecord],
                 modes: list[Mode], drafts: dict[str, str | None], bar: Any) -> list[RequestResult]:
    """One scenario: its edges and links started, one unmeasured warm-up request per mode, then
    every mode on every prompt in the order of ``schedule``; the edges and links stopped after."""
    results: list[RequestResult] = []
    bar.set_postfix_str(f"{sc.name}: starting edge")
    relay = RelayThread(sc.link, bed.verifier_port)
    vllm_relay = RelayThread(sc.link, vllm_port) if vllm_port else None  # the client -> vLLM link
    edges: dict[str, tuple[Process, DutyCycle, str]] = {}
    try:
        for tag in sorted({m.draft for m in modes if m.bound != "cloud"} | {"default"}):
            edges[tag] = bed.start_edge(sc, relay, drafts[tag], tag)
        warm = [{"role": "user", "content": "Hello!"}]
        for m in modes:  # warm-up, not measured
            url, counters, _ = target(m, edges, relay, vllm_relay)
            run_request(url, warm, m, 4, counters, lambda: 0.0, sc.name, -1, "warmup")
        relay.restart_clock()
        if vllm_relay is not None:
            vllm_relay.restart_clock()
        for rep, pid, order in schedule(len(prompts), args.repeats, modes):
            record = prompts[pid]
            for m in order:  # side by side: every mode on a prompt before the next
                time.sleep(args.settle_s)
                bar.set_postfix_str(f"{sc.name}/{m.name} (repeat {rep + 1}/{args.repeats})")
                url, counters, cpu = target(m, edges, relay, vllm_relay)
                results.append(run_request(url, record.messages, m, args.max_tokens, counters, cpu,
                                           sc.name, pid, record.category, repeat=rep))
                bar.update(1)
    finally:
        for edge, duty, _ in edges.values():
            duty.stop()
            edge.stop()
        relay.stop()  # bed.stop() below also stops any edge left running
        if vllm_relay is not None:
            vllm_relay.stop()
    return results


def build_report(command: str, args: argparse.Namespace, scenarios: list[Scenario], prompts: list[PromptRecord],
                 modes: list[Mode], results: list[RequestResult], mismatches: list[Mismatch], started: float,
                 load_start: tuple[float, float, float]) -> dict[str, Any]:
    """results.json's content (less the requests, which ``write`` adds): the command, the machine,
    the settings, each scenario's summary and the verdict of the lossless check."""
    return {
        "command": command,
        "machine": {"cpus": os.cpu_count(), "cpu": read_cpu().describe(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    # 1, 5 and 15 minute load averages: other work on the machine skews every timing
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "max_tokens": args.max_tokens, "prompts": len(prompts), "gamma": args.gamma,
        "repeats": args.repeats, "baseline": args.baseline,
        "categories": list(dict.fromkeys(p.category for p in prompts)),
        "verifier_backend": args.verifier_backend,
        "draft_model": args.draft_model or "edge default",
        "alt_draft": args.alt_draft if any(m.draft == "alt" for m in modes) else None,
        "scenarios": {
            sc.name: {"description": sc.description, "rtt_ms": sc.rtt_ms,
                      **scenario_summary([r for r in results if r.scenario == sc.name], modes, sc.rtt_ms / 1000,
                                         args.baseline, args.repeats)}
            for sc in scenarios
        },
        "lossless_ok": not mismatches,
        "mismatches": [m.as_dict() for m in mismatches],
    }


def publish(report: dict[str, Any], results: list[RequestResult], mismatches: list[Mismatch],
            args: argparse.Namespace) -> int:
    """Write the report to ``--out`` and print it; name each lossless mismatch on stderr. The exit
    status: 1 when there is any, else 0."""
    write(report, [vars(r) for r in results], args.out, with_plots=not args.no_plots)
    print(markdown(report))
    plots = "" if args.no_plots else ", tokens_per_s.png, latency_cdf.png"
    print(f"results: {args.out}/results.json, results.md{plots}")
    for mm in mismatches:
        print(f"LOSSLESS CHECK FAILED: {mm.describe()}", file=sys.stderr)
    return 1 if mismatches else 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "tandem-bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    modes = run_modes(args)
    scenarios = [load_scenario(s) for s in args.scenario]
    prompts = load_prompts(args.prompts, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    edge_args = ("--predictor", str(args.predictor)) if args.predictor else ()
    bed = Testbed(args.out / "logs", parse_cpus(args.verifier_cpus), parse_cpus(args.edge_cpus), args.gamma, edge_args,
                  args.verifier_backend)
    drafts = {"default": args.draft_model, "alt": _draft_path(args.alt_draft)}
    started, load_start = time.time(), os.getloadavg()
    results = run_all(bed, args, scenarios, prompts, modes, drafts)
    mismatches = lossless_mismatches(results, {m.name for m in modes if m.lossless})
    report = build_report(command, args, scenarios, prompts, modes, results, mismatches, started, load_start)
    return publish(report, results, mismatches, args)


if __name__ == "__main__":
    sys.exit(main())
