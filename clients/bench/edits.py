"""The edit workload of ``tandem-bench-predicted`` and its figures, pure (no servers, no I/O but
reading the workload file).

An item is a document (a 300-600 token code file or text) and an instruction asking for a small
change to it and for the whole updated document back. Each (item, repeat) runs three cases, their
order rotating (``clients.bench.cli.schedule``):

- ``none``: no prediction, the reference;
- ``predicted``: OpenAI's Predicted Outputs with the original document as the prediction;
- ``wrong``: another item's document as the prediction (``wrong_partner``), unrelated text.

The prediction's tokens are drafts verified losslessly, so greedy output must not change: the
three cases' token ids are held to be equal (``identity_failures``). Speed is compared per (item,
repeat) as the ratio of a case's tokens/s to ``none``'s, summarised across items and repeats
(``clients.bench.spread``), and held to issue 29's targets (``targets``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clients.bench.identity import Mismatch, token_difference, unusable
from clients.bench.measure import Mode, RequestResult, summarise
from clients.bench.report import table
from clients.bench.spread import Spread, ratios, spread

REFERENCE = "none"
CASES = (REFERENCE, "predicted", "wrong", "own")
CATEGORIES = ("code", "text")
# issue 29: tokens/s with the prediction over without it, per link profile (scenario name) ...
SPEEDUP_TARGETS = {"lan": 2.0, "broadband": 1.5}
# ... and with a wrong prediction, on every profile
WRONG_FLOOR = 0.95
# the user's message: the document then the instruction (the form SmolLM2-135M rewrites most
# often: docs/benchmarks.md), or the instruction first (the runs before 2026-12-08)
FORMS = ("document-first", "instruction-first")


@dataclass(frozen=True)
class EditItem:
    id: str
    category: str  # code | text
    instruction: str
    document: str  # the original; the prediction of the ``predicted`` case

    def message(self, form: str) -> str:
        """The user's message in ``form`` (``FORMS``): the document, a blank line, the instruction
        (``document-first``), or the other way round (``instruction-first``)."""
        if form == "document-first":
            return f"{self.document}\n\n{self.instruction}"
        if form == "instruction-first":
            return f"{self.instruction}\n\n{self.document}"
        raise ValueError(f"unknown form {form!r}: one of {FORMS}")


def load_edits(path: Path, limit: int | None = None) -> list[EditItem]:
    """The workload (JSONL: id, category, instruction, document), the first ``limit`` items."""
    items = [EditItem(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    if dupes := [i for i, n in Counter(x.id for x in items).items() if n > 1]:
        raise ValueError(f"{path}: duplicate ids {dupes}")
    if bad := [x.id for x in items if x.category not in CATEGORIES]:
        raise ValueError(f"{path}: items {bad} have a category outside {CATEGORIES}")
    items = items[:limit] if limit else items
    if len(items) < 2:
        raise ValueError("the wrong-prediction case needs at least two items")
    return items


def wrong_partner(index: int, n: int) -> int:
    """The item whose document is item ``index``'s wrong prediction: half-way round the list,
    never the item itself (``n`` >= 2)."""
    if n < 2:
        raise ValueError("a wrong prediction needs another item")
    return (index + n // 2) % n


def case_modes(edge_mode: str) -> list[Mode]:
    """The three cases as the bench's modes (rotated by ``clients.bench.cli.schedule``), each with
    the same ``tandem`` request options: only the prediction differs."""
    bound = {"cloud": "cloud", "speculative": "pipelined", "auto": "pipelined"}[edge_mode]
    return [Mode(name, {"mode": edge_mode}, True, bound) for name in CASES]


def prediction_for(case: str, items: Sequence[EditItem], index: int,
                   answers: Sequence[str] = ()) -> EditItem | None:
    """Whose document is the prediction of ``case`` on item ``index`` (None: no prediction);
    ``own``: the target's own greedy answer (``answers[index]``, from an unmeasured run), the
    prediction of a client that asks again: the mechanism's bound when the prediction is right."""
    if case == "predicted":
        return items[index]
    if case == "wrong":
        return items[wrong_partner(index, len(items))]
    if case == "own":
        item = items[index]
        return EditItem(f"{item.id}#own", item.category, item.instruction, answers[index] if answers else "")
    return None


@dataclass
class EditResult(RequestResult):
    """One request of the edit workload: ``mode`` is the case, ``prompt_id`` the item's index."""

    item_id: str = ""
    prediction_of: str | None = None  # the item whose document was the prediction
    max_tokens: int = 0
    accepted_prediction_tokens: int | None = None  # usage.completion_tokens_details; None: not reported
    rejected_prediction_tokens: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s else 0.0


def identity_failures(results: Sequence[EditResult]) -> list[Mismatch]:
    """Every result held to the ``none`` case's of the same scenario, item and repeat: the same
    token ids (as many as its usage counts) and text. The reference's own results are checked
    for usable token ids too."""
    refs = {(r.scenario, r.prompt_id, r.repeat): r for r in results if r.mode == REFERENCE}
    out = []
    for r in results:
        ref = refs.get((r.scenario, r.prompt_id, r.repeat))
        if ref is None:
            why: str | None = f"no {REFERENCE} result to compare with"
        else:
            why = (unusable(ref, REFERENCE) or unusable(r, "this case")
                   or token_difference(ref.token_ids or [], r.token_ids or [])
                   or (None if r.text == ref.text else "the same token ids, a different text"))
        if why is not None:
            out.append(Mismatch(r.scenario, r.prompt_id, r.mode, why, ref.text if ref else "", r.text, r.repeat))
    return out


def pair_ratios(results: Sequence[EditResult], case: str) -> list[float]:
    """``case``'s tokens/s over ``none``'s, (item, repeat) by (item, repeat)."""
    ref = {(r.prompt_id, r.repeat): r.tokens_per_s for r in results if r.mode == REFERENCE}
    mine = {(r.prompt_id, r.repeat): r.tokens_per_s for r in results if r.mode == case}
    keys = [k for k in mine if k in ref]
    return ratios([mine[k] for k in keys], [ref[k] for k in keys])


def prediction_figures(results: Sequence[EditResult]) -> dict[str, Any]:
    """Pooled over ``results``: the usage's accepted / (accepted + rejected) prediction tokens,
    the edge's own prediction_accepted / prediction_drafted (``tandem``), and the share of the
    output tokens that came from the prediction."""
    acc = sum(r.accepted_prediction_tokens or 0 for r in results)
    rej = sum(r.rejected_prediction_tokens or 0 for r in results)
    drafted = sum(int(r.stats.get("prediction_drafted", 0)) for r in results)
    accepted = sum(int(r.stats.get("prediction_accepted", 0)) for r in results)
    tokens = sum(r.completion_tokens for r in results)
    return {"accepted_prediction_tokens": acc, "rejected_prediction_tokens": rej,
            "prediction_acceptance": round(acc / (acc + rej), 4) if acc + rej else 0.0,
            "prediction_drafted": drafted, "prediction_accepted": accepted,
            "edge_prediction_acceptance": round(accepted / drafted, 4) if drafted else 0.0,
            "output_from_prediction": round(acc / tokens, 4) if tokens else 0.0,
            "usage_reported": sum(r.accepted_prediction_tokens is not None for r in results)}


@dataclass(frozen=True)
class Target:
    """Issue 29's bar for one ratio on one link profile, held to the median over (item, repeat)."""

    scenario: str
    case: str
    threshold: float
    ratio: Spread

    @property
    def passed(self) -> bool:
        return bool(self.ratio.values) and self.ratio.median >= self.threshold

    def line(self) -> str:
        n = len(self.ratio.values)
        below = sum(v < self.threshold for v in self.ratio.values)
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: {self.scenario} {self.case}/{REFERENCE} >= {self.threshold:g}x: median "
                f"{self.ratio.median:.3f}x [{self.ratio.min:.3f}-{self.ratio.max:.3f}] over {n} (item, repeat) "
                f"pairs, {below} below")

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "case": self.case, "threshold": self.threshold, "passed": self.passed,
                "ratio": self.ratio.as_dict(3)}


def targets(scenario: str, results: Sequence[EditResult]) -> list[Target]:
    """The targets that apply to ``scenario``: the speed-up with the prediction where issue 29
    names the profile, and the wrong prediction's floor everywhere."""
    out = []
    if scenario in SPEEDUP_TARGETS:
        out.append(Target(scenario, "predicted", SPEEDUP_TARGETS[scenario], spread(pair_ratios(results, "predicted"))))
    out.append(Target(scenario, "wrong", WRONG_FLOOR, spread(pair_ratios(results, "wrong"))))
    return out


def case_summary(results: Sequence[EditResult], mode: Mode, rtt_s: float) -> dict[str, Any]:
    """One case on one profile: the bench's per-mode summary (acceptance, latency, bytes; pooled),
    tokens/s and TTFT across (item, repeat), the ratio to ``none``, the prediction figures and
    which path (``tandem.path``) served the requests."""
    of = [r for r in results if r.mode == mode.name]
    vs = spread(pair_ratios(results, mode.name)) if mode.name != REFERENCE else None
    return {"case": mode.name, **summarise(list(of), mode, rtt_s).as_dict(),
            "tokens_per_s_spread": spread([r.tokens_per_s for r in of]).as_dict(2),
            "ttft_ms_spread": spread([r.ttft_s * 1000 for r in of]).as_dict(1),
            **({"vs_baseline": vs.as_dict(3)} if vs is not None else {}),
            **prediction_figures(of),
            "paths": dict(Counter(str(r.stats.get("path", "?")) for r in of))}


def scenario_summary(scenario: str, results: Sequence[EditResult], modes: Sequence[Mode],
                     rtt_s: float) -> dict[str, Any]:
    mine = [r for r in results if r.scenario == scenario]
    bars = targets(scenario, mine)
    return {"cases": {m.name: case_summary(mine, m, rtt_s) for m in modes},
            "targets": [t.as_dict() for t in bars], "target_lines": [t.line() for t in bars]}


def as_dict(result: EditResult) -> dict[str, Any]:
    """A result for the raw-results JSON."""
    return {**asdict(result), "tokens_per_s": round(result.tokens_per_s, 3)}


COLUMNS = [("case", "case"), ("tokens_per_s_spread", "tok/s"), ("vs_baseline", "x {baseline}"),
           ("ttft_ms_spread", "TTFT ms"), ("tokens", "output tokens"),
           ("prediction_acceptance", "prediction accepted/(acc+rej)"),
           ("edge_prediction_acceptance", "edge prediction accepted/drafted"),
           ("output_from_prediction", "output from prediction"), ("acceptance_rate", "accepted/drafted"),
           ("tokens_per_round", "tokens/round"), ("paths", "paths")]


def markdown(report: dict[str, Any]) -> str:
    """Per link profile: a table of the three cases, then the targets; then the identity check."""
    m = report["machine"]
    lines = [f"Command: `{report['command']}`", "", f"CPU: {m['cpu']}", "",
             f"Load average (1, 5, 15 min) at start: {m['load_average_start']}, at end: {m['load_average_end']}", "",
             f"Items: {report['items']}, repeats: {report['repeats']}, edge mode: {report['mode']}, message: "
             f"{report.get('form', 'instruction-first')}, max_tokens: "
             f"document tokens + {report['extra_tokens']} (tok/s: median [min-max] over items x repeats; "
             "ratios per (item, repeat))", ""]
    for name, sc in report["scenarios"].items():
        rows = [{**c, "paths": ", ".join(f"{k} {v}" for k, v in c["paths"].items())} for c in sc["cases"].values()]
        lines += [f"### {name}: {sc['description']}", "", *table(COLUMNS, rows, REFERENCE)]
        lines += [f"- {t}" for t in sc["target_lines"]] + [""]
    ok = report["lossless_ok"]
    lines.append("Greedy identity of none, predicted and wrong (output token ids): "
                 f"**{'PASS' if ok else 'FAIL'}**" + ("" if ok else f" ({len(report['mismatches'])} mismatches)"))
    lines += [f"- {x['scenario']} item {x['prompt_id']} case {x['mode']} (repeat {x['repeat']}): {x['reason']}"
              for x in report["mismatches"]]
    return "\n".join(lines) + "\n"
