"""`tandem-bench-predicted`: OpenAI Predicted Outputs on an edit workload (issue 29), through the
real edge and verifier across emulated links.

  tandem-bench-predicted                                   # LAN and broadband, 10 items, 3 repeats
  tandem-bench-predicted --scenario lan --limit 2 --repeats 1   # a smoke run

Each item of clients/prompts/edits.jsonl asks for a small change to a 300-600 token document and
for the whole document back. Per item and repeat four cases run, in an order rotating from one
(item, repeat) to the next (``clients.bench.cli.schedule``): ``none`` (no prediction),
``predicted`` (the original document as the prediction), ``wrong`` (another item's document) and
``own`` (the target's own answer, from an unmeasured run first: the bound when a prediction is right):
greedy chat completions streamed through the OpenAI SDK, max_tokens the document's tokens plus
--extra-tokens. Per link profile it prints tokens/s per case (median [min-max] over items x
repeats), the ratios predicted/none and wrong/none taken per (item, repeat), how much of the
prediction was accepted, and issue 29's targets as PASS/FAIL lines (``clients.bench.edits``).
The cases' output token ids must be equal for every (item, repeat); any difference, or a
result without token ids, is printed and the command exits with status 1. Writes results.json
(every request) and results.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai import OpenAI, omit
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from clients.bench.cli import default_backend, edge_cpu_reader, schedule
from clients.bench.cpu import parse_cpus
from clients.bench.edits import (
    FORMS,
    EditItem,
    EditResult,
    as_dict,
    case_modes,
    identity_failures,
    load_edits,
    markdown,
    prediction_for,
    scenario_summary,
)
from clients.bench.measure import Mode
from clients.bench.scenario import Scenario, load_scenario
from clients.bench.testbed import ROOT, RelayThread, Testbed
from verifier.core.cpu import read_cpu

MODEL = "SmolLM2-135M-Instruct"
DEFAULT_PROMPTS = ROOT / "clients" / "prompts" / "edits.jsonl"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tandem-bench-predicted", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", nargs="+", default=["lan", "broadband"],
                   help="link profiles (clients/scenarios) or TOML paths")
    p.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="JSONL: id, category, instruction, document")
    p.add_argument("--limit", type=int, default=None, help="use the first this many items (at least 2)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the items, each with the three cases")
    p.add_argument("--mode", choices=["auto", "speculative", "cloud"], default="auto",
                   help="the edge's mode (the request's tandem.mode) in every case")
    p.add_argument("--form", choices=FORMS, default=FORMS[0],
                   help="the user's message: the document then the instruction, or the instruction first")
    p.add_argument("--extra-tokens", type=int, default=64, help="max_tokens = the document's tokens + this")
    p.add_argument("--gamma", type=int, default=4, help="the edge's default draft length")
    p.add_argument("--settle-s", type=float, default=1.0, help="idle seconds before each measured request")
    p.add_argument("--draft-model", default=None, help="draft GGUF (default: the edge's default)")
    p.add_argument("--verifier-backend", choices=["torch", "vllm"], default=default_backend(),
                   help="the verifier's backend (default: vllm where installed)")
    p.add_argument("--verifier-cpus", default="1", help="cores the verifier is pinned to ('' = no pinning)")
    p.add_argument("--edge-cpus", default="0", help="cores the edge is pinned to, unless a scenario says")
    p.add_argument("--out", type=Path, default=Path("docs/bench-predicted"), help="results.json and results.md")
    p.add_argument("--logs", type=Path, default=Path("bench-results/predicted-logs"), help="the servers' logs")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.limit is not None and args.limit < 2:
        p.error("--limit must be at least 2 (the wrong prediction is another item's document)")
    return args


def _shown(path: Path) -> str:
    """A path as the reproducing command gives it: relative to the repository when inside it."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


def reproduce(args: argparse.Namespace) -> str:
    """The command line that runs this benchmark again with every setting spelled out."""
    parts = ["tandem-bench-predicted", "--scenario", *args.scenario, "--prompts", _shown(args.prompts),
             "--repeats", str(args.repeats), "--mode", args.mode, "--form", args.form,
             "--extra-tokens", str(args.extra_tokens), "--gamma", str(args.gamma),
             "--verifier-backend", args.verifier_backend,
             "--verifier-cpus", args.verifier_cpus, "--edge-cpus", args.edge_cpus, "--settle-s", str(args.settle_s),
             "--out", str(args.out)]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.draft_model:
        parts += ["--draft-model", args.draft_model]
    return shlex.join(parts)


def document_tokens(items: Sequence[EditItem], draft_model: str | None = None) -> list[int]:
    """Each document's length in tokens of the draft's vocabulary (the target shares it)."""
    from verifier.core.gguf import load_llama
    from verifier.core.models import resolve_draft

    with closing(load_llama(resolve_draft(draft_model), vocab_only=True)) as vocab:
        return [len(vocab.tokenize(x.document.encode("utf-8"), add_bos=False, special=False)) for x in items]


@dataclass
class EditStream:
    """A streamed chat completion as the OpenAI SDK hands it over: the text and when each piece
    arrived, the output token ids (``return_token_ids``: the edge sends them on the choice's last
    chunk, vLLM with each chunk), the ``tandem`` statistics and the usage (the last chunk)."""

    t0: float
    text: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    token_ids: list[int] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    usage: CompletionUsage | None = None

    def feed(self, chunk: ChatCompletionChunk, now: float) -> None:
        for choice in chunk.choices:
            if choice.delta.content:
                self.times.append(now - self.t0)
                self.text.append(choice.delta.content)
            if (ids := (choice.model_extra or {}).get("token_ids")) is not None:
                self.token_ids = [*(self.token_ids or []), *ids]
        if (stats := (chunk.model_extra or {}).get("tandem")) is not None:
            self.stats = stats
        if chunk.usage is not None:
            self.usage = chunk.usage

    def prediction_counts(self) -> tuple[int | None, int | None]:
        """(accepted, rejected) prediction tokens of the usage; None where it says nothing."""
        details = self.usage.completion_tokens_details if self.usage else None
        if details is None:
            return None, None
        return details.accepted_prediction_tokens, details.rejected_prediction_tokens


def request(item: EditItem, prediction: EditItem | None, case: Mode, max_tokens: int, form: str) -> dict[str, Any]:
    """The OpenAI SDK's arguments of one greedy request (but ``stream=True``): the item's message
    in ``form``, the prediction through the SDK's own ``prediction=``, the edge's options
    (``tandem``, ``return_token_ids``) through ``extra_body``."""
    return {"model": MODEL, "messages": [{"role": "user", "content": item.message(form)}], "max_tokens": max_tokens,
            "temperature": 0, "stream_options": {"include_usage": True},
            "prediction": {"type": "content", "content": prediction.document} if prediction else omit,
            "extra_body": {"tandem": case.tandem, "return_token_ids": True}}


def run_edit(client: OpenAI, item: EditItem, prediction: EditItem | None, case: Mode, max_tokens: int, form: str,
             counters: Any, edge_cpu: Callable[[], float], scenario: str, index: int, repeat: int) -> EditResult:
    """One greedy request, streamed, with its output token ids and the prediction (if any)."""
    up0, down0, cpu0 = counters.bytes_up, counters.bytes_down, edge_cpu()
    t0 = time.perf_counter()
    reader = EditStream(t0)
    with client.chat.completions.create(stream=True, **request(item, prediction, case, max_tokens, form)) as stream:
        for chunk in stream:
            reader.feed(chunk, time.perf_counter())
    total = time.perf_counter() - t0
    accepted, rejected = reader.prediction_counts()
    return EditResult(
        scenario=scenario, mode=case.name, prompt_id=index, category=item.category, text="".join(reader.text),
        completion_tokens=reader.usage.completion_tokens if reader.usage else 0,
        ttft_s=reader.times[0] if reader.times else total, total_s=total, delta_times_s=reader.times,
        stats=reader.stats, bytes_up=counters.bytes_up - up0, bytes_down=counters.bytes_down - down0,
        edge_cpu_s=edge_cpu() - cpu0, token_ids=reader.token_ids, repeat=repeat, item_id=item.id,
        prediction_of=prediction.id if prediction else None, max_tokens=max_tokens,
        accepted_prediction_tokens=accepted, rejected_prediction_tokens=rejected,
    )


def machine(load_start: Sequence[float]) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "cpu": read_cpu().describe(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()]}


def collect(args: argparse.Namespace, items: Sequence[EditItem], budgets: Sequence[int], modes: Sequence[Mode],
            scenarios: Sequence[Scenario]) -> list[EditResult]:
    """Start the verifier, then per link profile a relay and an edge behind it; run every (item,
    repeat) with the three cases in their rotated order; stop everything whatever happens."""
    from tqdm import tqdm

    args.logs.mkdir(parents=True, exist_ok=True)
    bed = Testbed(args.logs, parse_cpus(args.verifier_cpus), parse_cpus(args.edge_cpus), args.gamma, (),
                  args.verifier_backend)
    results: list[EditResult] = []
    answers: list[str] = []
    bar = tqdm(total=len(scenarios) * len(items) * len(modes) * args.repeats, unit="req", desc="bench-predicted")
    try:
        bar.set_postfix_str("starting verifier")
        bed.start_verifier()
        for sc in scenarios:
            bar.set_postfix_str(f"{sc.name}: starting edge")
            relay = RelayThread(sc.link, bed.verifier_port)
            try:
                edge, duty, url = bed.start_edge(sc, relay, args.draft_model, "default")
                client = OpenAI(base_url=f"{url}/v1", api_key="not-needed", timeout=600, max_retries=0)
                cpu = edge_cpu_reader(edge.pid)
                try:
                    if not answers:  # the target's own answers, for the case ``own`` (not measured)
                        reference = Mode("reference", {"mode": "cloud"}, True, "cloud")
                        answers.extend(run_edit(client, item, None, reference, budgets[i], args.form, relay.counters,
                                                lambda: 0.0, sc.name, -1, -1).text for i, item in enumerate(items))
                    for m in modes:  # warm-up, not measured
                        run_edit(client, items[0], prediction_for(m.name, items, 0, answers), m, 4, args.form,
                                 relay.counters,
                                 lambda: 0.0, sc.name, -1, -1)
                    relay.restart_clock()
                    for rep, i, order in schedule(len(items), args.repeats, list(modes)):
                        for m in order:
                            time.sleep(args.settle_s)
                            bar.set_postfix_str(f"{sc.name}/{m.name} (repeat {rep + 1}/{args.repeats})")
                            results.append(run_edit(client, items[i], prediction_for(m.name, items, i, answers), m,
                                                    budgets[i], args.form, relay.counters, cpu, sc.name, i,
                                                    rep))
                            bar.update(1)
                finally:
                    client.close()
                    duty.stop()
                    edge.stop()
            finally:
                relay.stop()  # bed.stop() below stops an edge left running too
    finally:
        bar.close()
        bed.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    items = load_edits(args.prompts, args.limit)
    tokens = document_tokens(items, args.draft_model)
    modes = case_modes(args.mode)
    scenarios = [load_scenario(s) for s in args.scenario]
    started, load_start = time.time(), os.getloadavg()
    results = collect(args, items, [n + args.extra_tokens for n in tokens], modes, scenarios)
    mismatches = identity_failures(results)
    report: dict[str, Any] = {
        "command": reproduce(args), "machine": machine(load_start),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1), "items": len(items), "repeats": args.repeats,
        "mode": args.mode, "form": args.form, "extra_tokens": args.extra_tokens, "gamma": args.gamma,
        "verifier_backend": args.verifier_backend, "draft_model": args.draft_model or "edge default",
        "document_tokens": {x.id: n for x, n in zip(items, tokens)},
        "scenarios": {sc.name: {"description": sc.description, "rtt_ms": sc.rtt_ms,
                                **scenario_summary(sc.name, results, modes, sc.rtt_ms / 1000)} for sc in scenarios},
        "lossless_ok": not mismatches, "mismatches": [x.as_dict() for x in mismatches],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**report, "requests": [as_dict(r) for r in results]}, indent=1))
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))
    print(f"results: {args.out}/results.json, results.md; servers' logs: {args.logs}")
    print(f"reproduce: {report['command']}")
    for x in mismatches:
        print(f"LOSSLESS CHECK FAILED: {x.where()}: {x.reason}\n  none: {x.expected_text!r}\n  got:  {x.got_text!r}",
              file=sys.stderr)
    return 1 if mismatches else 0

if __name__ == "__main__":
    sys.exit(main())
