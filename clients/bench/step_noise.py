"""`python -m clients.bench.step_noise`: how much one request's decode speed varies on this
machine when nothing changes, and whether mode auto's requests differ from cloud-only ones.

Starts a verifier (vLLM by default) and one edge on loopback, then sends the same greedy chat
request (an item of clients/prompts/edits.jsonl, ``--tokens`` tokens) ``--requests`` times per
mode, the modes in a carry-over balanced order (``clients.bench.spread.balanced``) with
``--settle-s`` idle seconds before each. Per request it records the time to the first token
and the median time between tokens after the 20th (one decode step of the verifier when the
request streams from the cloud). Prints per mode the median [min-max] of both, and the slowest
over the fastest cloud-only request: the spread any ratio of two single requests carries here.

    .venv/bin/python -m clients.bench.step_noise --requests 6 --tokens 200
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from openai import OpenAI

from clients.bench.cpu import parse_cpus
from clients.bench.edits import load_edits
from clients.bench.predicted import DEFAULT_PROMPTS, MODEL, machine
from clients.bench.scenario import load_scenario
from clients.bench.spread import balanced, spread
from clients.bench.testbed import RelayThread, Testbed

SKIP = 20  # tokens before the steps counted (the prefill and the first steps)


@dataclass(frozen=True)
class Sample:
    turn: int
    mode: str
    tokens: int
    ttft_ms: float
    median_step_ms: float | None
    path: str | None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m clients.bench.step_noise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=6, help="requests per mode")
    p.add_argument("--tokens", type=int, default=200, help="max_tokens of each request")
    p.add_argument("--modes", nargs="+", default=["cloud", "auto"], choices=["cloud", "auto", "speculative"])
    p.add_argument("--item", type=int, default=0, help="which item of clients/prompts/edits.jsonl")
    p.add_argument("--settle-s", type=float, default=1.0, help="idle seconds before each request")
    p.add_argument("--backend", choices=["vllm", "torch"], default="vllm", help="the verifier's backend")
    p.add_argument("--verifier-cpus", default="1")
    p.add_argument("--edge-cpus", default="0")
    p.add_argument("--out", type=Path, default=Path("bench-results/step-noise"))
    args = p.parse_args(argv)
    if args.requests < 1 or args.tokens <= SKIP + 1:
        p.error(f"--requests must be at least 1 and --tokens above {SKIP + 1}")
    return args


def one_request(client: OpenAI, prompt: str, mode: str, tokens: int, turn: int) -> Sample:
    """One greedy streamed request; its first-token time, median step and path."""
    t0 = time.perf_counter()
    times: list[float] = []
    stats: dict[str, object] = {}
    with client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                        max_tokens=tokens, temperature=0, stream=True,
                                        extra_body={"tandem": {"mode": mode}}) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append(time.perf_counter() - t0)
            stats = (chunk.model_extra or {}).get("tandem") or stats
    steps = [b - a for a, b in zip(times[SKIP:], times[SKIP + 1:])]
    return Sample(turn, mode, len(times), round(1000 * times[0], 2) if times else 0.0,
                  round(1000 * statistics.median(steps), 2) if steps else None,
                  str(stats["path"]) if "path" in stats else None)


def collect(args: argparse.Namespace) -> list[Sample]:
    prompt = load_edits(DEFAULT_PROMPTS)[args.item].message("instruction-first")  # as its committed runs
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    bed = Testbed(args.out / "logs", parse_cpus(args.verifier_cpus), parse_cpus(args.edge_cpus), 4, (), args.backend)
    samples: list[Sample] = []
    try:
        bed.start_verifier()
        scenario = load_scenario("lan")
        relay = RelayThread(scenario.link, bed.verifier_port)
        try:
            _, duty, url = bed.start_edge(scenario, relay, None, "default")
            client = OpenAI(base_url=f"{url}/v1", api_key="not-needed", timeout=600, max_retries=0)
            for mode in args.modes:  # warm-up, not measured
                one_request(client, prompt, mode, SKIP + 4, -1)
            for turn in range(args.requests):
                for mode in balanced(args.modes, turn):
                    time.sleep(args.settle_s)
                    samples.append(one_request(client, prompt, mode, args.tokens, turn))
                    print(json.dumps(asdict(samples[-1])), file=sys.stderr, flush=True)
            duty.stop()
        finally:
            relay.stop()
    finally:
        bed.stop()
    return samples


def summary(samples: list[Sample], modes: list[str]) -> str:
    lines = ["| mode | requests | first token ms | median step ms | paths |", "|---|---|---|---|---|"]
    for mode in modes:
        mine = [s for s in samples if s.mode == mode]
        steps = [s.median_step_ms for s in mine if s.median_step_ms is not None]
        paths = sorted({s.path or "?" for s in mine})
        lines.append(f"| {mode} | {len(mine)} | {spread([s.ttft_ms for s in mine]).cell(1)} "
                     f"| {spread(steps).cell(1)} | {', '.join(paths)} |")
    cloud = [s.median_step_ms for s in samples if s.path == "cloud" and s.median_step_ms]
    if len(cloud) > 1:
        lines.append(f"\nSlowest over fastest cloud-streamed request (median step): {max(cloud) / min(cloud):.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    load_start = os.getloadavg()
    samples = collect(args)
    command = "python -m clients.bench.step_noise " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = summary(samples, args.modes)
    host = machine(load_start)
    report = {"command": command, "machine": host, "requests": [asdict(s) for s in samples]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(f"{text}\n\nCommand: `{command}`\n\nCPU: {host['cpu']}\n")
    print(text)
    print(f"reproduce: {command}\nresults: {args.out}/results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
