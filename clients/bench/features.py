"""`python -m clients.bench.features`: does speculation keep its acceptance with the OpenAI
features that shape the output (JSON mode, penalties) on?

Starts a verifier and an edge on loopback (no emulated link: this measures acceptance and the
local speed, not the network), then per repeat sends every bench prompt once per (feature set,
draft, mode): greedy, speculative, the edge's default gamma. Each repeat is one pass over the
prompts; the cases' order changes from one (prompt, repeat) to the next, carry-over balanced
(``clients.bench.spread.balanced``), so drift and whatever ran just before hit them alike. The
warm-up is not measured. Per repeat it takes, per set, the draft acceptance (accepted / drafted
over the repeat's requests, and the median per request), the median tokens/s, and both as ratios
to the plain set; with several ``--modes`` (``tandem.mode``) each set's tok/s also as a ratio to
the first mode's. Every figure is printed as median [min-max] over the repeats, ratios taken
repeat by repeat. With several ``--drafts`` one edge per draft shares the verifier. The
``sampled`` set is temperature 0.8, top_p 0.95, a seed per prompt. A set the verifier refuses in
a mode (a 400) is reported as refused. Writes results.json (the command, the machine, every
request) and results.md (the table) to --out.

    .venv/bin/python -m clients.bench.features --limit 12 --max-tokens 64 --repeats 3
    .venv/bin/python -m clients.bench.features --drafts models/smollm2-135m-draft.gguf NEW.gguf
    .venv/bin/python -m clients.bench.features --backend vllm --modes cloud speculative --limit 8 --repeats 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx

from clients.bench.predicted import machine
from clients.bench.spread import Spread, balanced, ratios, spread
from clients.bench.testbed import Process, start_verifier
from clients.procs import free_port, stop_process, wait_healthy
from verifier.core.prompts import load_prompts

MODEL = "SmolLM2-135M-Instruct"
PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"
DEFAULT_DRAFT = "default draft"
FEATURES: dict[str, dict[str, Any]] = {
    "plain": {},
    "json_object": {"response_format": {"type": "json_object"}},
    "penalties": {"frequency_penalty": 0.5, "presence_penalty": 0.3, "repetition_penalty": 1.1},
    "json+penalties": {"response_format": {"type": "json_object"}, "frequency_penalty": 0.5,
                       "presence_penalty": 0.3},
    "sampled": {"temperature": 0.8, "top_p": 0.95},
}
T = TypeVar("T")


class Case(NamedTuple):
    """What one request measures: a feature set, through one draft's edge, in one mode."""

    feature: str
    draft: str
    mode: str


@dataclass(frozen=True)
class Request:
    """One measured request; the figures are None when the verifier refused it (a 400)."""

    prompt: int
    repeat: int
    feature: str
    draft: str
    mode: str
    accepted: int | None
    drafted: int | None
    tokens: int | None
    tok_s: float | None

    @property
    def refused(self) -> bool:
        return self.accepted is None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "refused": self.refused}


@dataclass(frozen=True)
class RepeatStats:
    """One (draft, mode, feature set) in one repeat."""

    acceptance: float  # accepted / drafted over the repeat's requests
    median_acceptance: float  # the median of the requests' own rates
    tok_s: float  # the median of the requests' tokens/s


@dataclass(frozen=True)
class Row:
    """One (draft, mode, feature set) over the repeats; the figures are None when it was refused."""

    draft: str
    mode: str
    feature: str
    acceptance: Spread | None = None
    median_acceptance: Spread | None = None
    acceptance_x_plain: Spread | None = None
    tok_s: Spread | None = None
    tok_s_x_plain: Spread | None = None
    tok_s_x_first_mode: Spread | None = None

    @property
    def refused(self) -> bool:
        return self.acceptance is None

    def as_dict(self) -> dict[str, Any]:
        figures = {k: v.as_dict() if isinstance(v, Spread) else v for k, v in vars(self).items()}
        return {**figures, "refused": self.refused}


def plan(prompts: int, repeats: int, cases: Sequence[T]) -> list[tuple[int, int, list[T]]]:
    """(repeat, prompt, cases in the order they run) in run order: each repeat one pass over the
    prompts, the cases in a carry-over balanced order (``clients.bench.spread.balanced``) that
    changes from each (prompt, repeat) to the next."""
    runs = itertools.product(range(repeats), range(prompts))
    return [(r, p, balanced(cases, turn)) for turn, (r, p) in enumerate(runs)]


def repeat_stats(requests: Sequence[Request]) -> RepeatStats:
    """The table's figures over one repeat's requests of one (draft, mode, feature set), none refused."""
    drafted = sum(r.drafted or 0 for r in requests)
    return RepeatStats(
        acceptance=sum(r.accepted or 0 for r in requests) / max(1, drafted),
        median_acceptance=statistics.median((r.accepted or 0) / r.drafted if r.drafted else 0.0 for r in requests),
        tok_s=statistics.median(r.tok_s or 0.0 for r in requests))


def per_repeat(results: Sequence[Request], draft: str, mode: str, feature: str,
               repeats: int) -> list[RepeatStats] | None:
    """``repeat_stats`` per repeat, in repeat order; None when any of the requests was refused."""
    mine = [r for r in results if (r.draft, r.mode, r.feature) == (draft, mode, feature)]
    if not mine or any(r.refused for r in mine):
        return None
    return [repeat_stats([r for r in mine if r.repeat == k]) for k in range(repeats)]


def summarise(results: Sequence[Request], drafts: Sequence[str], modes: Sequence[str],
              features: Sequence[str], repeats: int) -> list[Row]:
    """Per draft, mode and feature set the figures over the repeats, ratios taken repeat by repeat."""
    rows = []
    for draft, mode, feature in itertools.product(drafts, modes, features):
        stats = per_repeat(results, draft, mode, feature, repeats)
        if stats is None:
            rows.append(Row(draft, mode, feature))
            continue
        plain = per_repeat(results, draft, mode, "plain", repeats)
        first = per_repeat(results, draft, modes[0], feature, repeats)
        acc, speed = [s.acceptance for s in stats], [s.tok_s for s in stats]
        rows.append(Row(
            draft, mode, feature, acceptance=spread(acc),
            median_acceptance=spread([s.median_acceptance for s in stats]),
            acceptance_x_plain=spread(ratios(acc, [s.acceptance for s in plain])) if plain else None,
            tok_s=spread(speed), tok_s_x_plain=spread(ratios(speed, [s.tok_s for s in plain])) if plain else None,
            tok_s_x_first_mode=spread(ratios(speed, [s.tok_s for s in first])) if first else None))
    return rows


def table(rows: Sequence[Row], first_mode: str) -> str:
    """The Markdown table: every figure as median [min-max] over the repeats."""
    def cell(s: Spread | None, digits: int) -> str:
        return s.cell(digits) if s is not None else "-"

    lines = [f"| draft | mode | feature set | acceptance (all) | median acceptance | x plain | median tok/s "
             f"| x plain | x {first_mode} |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {Path(r.draft).name} | {r.mode} | {r.feature} |"
        if r.refused:
            lines.append(f"{head} refused (400) | | | | | |")
            continue
        lines.append(f"{head} {cell(r.acceptance, 3)} | {cell(r.median_acceptance, 3)} "
                     f"| {cell(r.acceptance_x_plain, 2)} | {cell(r.tok_s, 1)} | {cell(r.tok_s_x_plain, 2)} "
                     f"| {cell(r.tok_s_x_first_mode, 2)} |")
    return "\n".join(lines)


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


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the prompts, each with every case")
    parser.add_argument("--drafts", nargs="+", default=[None], metavar="GGUF",
                        help="draft models to compare, one edge each (default: the edge's default draft)")
    parser.add_argument("--backend", choices=["torch", "vllm"], default="torch", help="the verifier's backend")
    parser.add_argument("--modes", nargs="+", default=["speculative"], choices=["speculative", "cloud", "auto"],
                        help="tandem.mode of the requests; several are interleaved")
    parser.add_argument("--out", type=Path, default=Path("bench-results/features"),
                        help="where results.json and results.md go")
    args = parser.parse_args(argv)
    if args.limit < 1 or args.repeats < 1:
        parser.error("--limit and --repeats must be at least 1")
    return args


def reproduce(args: argparse.Namespace) -> str:
    """The command line that runs this benchmark again with every setting spelled out."""
    parts = [".venv/bin/python", "-m", "clients.bench.features", "--limit", str(args.limit),
             "--max-tokens", str(args.max_tokens), "--repeats", str(args.repeats), "--backend", args.backend,
             "--modes", *args.modes, "--out", str(args.out)]
    if args.drafts != [None]:
        parts += ["--drafts", *args.drafts]
    return shlex.join(parts)


def collect(args: argparse.Namespace, logs: Path) -> list[Request]:
    """Start the verifier and one edge per draft, warm each up unmeasured, run every (prompt,
    repeat) with every case in its balanced order; stop everything whatever happens."""
    prompts = load_prompts(PROMPTS)[: args.limit]
    verifier, vport = start_verifier(logs / "verifier.log", None, ["--threads", "1", "--backend", args.backend])
    edges: dict[str, tuple[Process, str]] = {}
    results: list[Request] = []
    try:
        for i, draft in enumerate(args.drafts):
            eport = free_port()
            extra = ["--draft-model", draft] if draft else []
            edge = Process(["-m", "proxy.cli", "--port", str(eport), "--verifier-url", f"http://127.0.0.1:{vport}",
                            "--threads", "1", *extra], logs / f"edge-{i}.log", None)
            edges[draft or DEFAULT_DRAFT] = (edge, f"http://127.0.0.1:{eport}")
        for edge, url in edges.values():
            wait_healthy(url, edge.proc, "edge")
            run(url, prompts[0].messages, {}, 8)  # warm-up, not measured
        cases = [Case(*c) for c in itertools.product(FEATURES, edges, args.modes)]
        for rep, i, order in plan(len(prompts), args.repeats, cases):
            for c in order:
                r = run(edges[c.draft][1], prompts[i].messages, FEATURES[c.feature], args.max_tokens, c.mode, seed=i)
                figures = (int(r["accepted"]), int(r["drafted"]), int(r["tokens"]), r["tok_s"]) if r else (None,) * 4
                results.append(Request(i, rep, *c, *figures))
            print(f"repeat {rep + 1}/{args.repeats}, prompt {i + 1}/{len(prompts)} done", file=sys.stderr, flush=True)
    finally:
        for edge, _ in edges.values():
            stop_process(edge.proc)
        stop_process(verifier.proc)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logs = Path(tempfile.mkdtemp(prefix="tandem-features-"))
    started, load_start = time.time(), os.getloadavg()
    results = collect(args, logs)
    drafts = [d or DEFAULT_DRAFT for d in args.drafts]
    rows = summarise(results, drafts, args.modes, list(FEATURES), args.repeats)
    host = machine(load_start)
    command = reproduce(args)
    prompts = len({r.prompt for r in results})
    md = (f"{table(rows, args.modes[0])}\n\n{prompts} prompts x {args.max_tokens} tokens x {args.repeats} repeats, "
          f"loopback, verifier backend {args.backend}; median [min-max] over the repeats\n\n"
          f"reproduce: `{command}`\n\nCPU: {host['cpu']}\n")
    report = {"command": command, "machine": host, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
              "duration_s": round(time.time() - started, 1), "prompts": prompts, "max_tokens": args.max_tokens,
              "repeats": args.repeats, "backend": args.backend, "drafts": drafts, "modes": args.modes,
              "features": FEATURES, "rows": [r.as_dict() for r in rows], "requests": [r.as_dict() for r in results]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(md)
    print(f"\n{md}\nresults: {args.out}/results.json, results.md; logs: {logs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
