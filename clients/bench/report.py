"""Benchmark outputs: JSON, a Markdown table, and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clients.bench.spread import spread

COLUMNS = [
    ("mode", "mode"), ("tokens_per_s_spread", "tok/s"), ("vs_baseline", "x {baseline}"), ("vs_cloud", "x cloud"),
    ("ttft_ms_median", "TTFT ms"),
    ("tpot_ms_median", "TPOT ms"),
    ("tpot_ms_p90", "TPOT p90"), ("acceptance_rate", "accepted/drafted"), ("accepted_per_round", "accepted/round"),
    ("tokens_per_round", "tokens/round"), ("alpha_per_token", "alpha/token"),
    ("rounds_per_token", "rounds/tok"), ("rows_per_token", "rows/tok"), ("stale_rounds", "stale"),
    ("wasted_drafts_per_token", "wasted/tok"),
    ("bytes_up_per_token", "B up/tok"), ("bytes_down_per_token", "B down/tok"),
    ("cloud_ms_per_token", "cloud ms/tok"), ("edge_cpu_ms_per_token", "edge CPU ms/tok"),
    ("bound_tokens_per_s", "bound tok/s"), ("measured_over_bound", "meas/bound"),
]
CATEGORY_COLUMNS = [
    ("category", "category"), ("mode", "mode"), ("requests", "requests"), ("tokens_per_s_spread", "tok/s"),
    ("vs_baseline", "x {baseline}"), ("acceptance_rate", "accepted/drafted"), ("accepted_per_round", "accepted/round"),
    ("tokens_per_round", "tokens/round"), ("alpha_per_token", "alpha/token"), ("paths", "paths"),
]
RATIOS = {"vs_baseline", "vs_cloud"}


def cell(row: dict[str, Any], key: str) -> str:
    """A table cell: a figure across repeats as ``median [min-max]``, anything else as it is."""
    value = row.get(key, "")
    if isinstance(value, dict) and "median" in value:
        digits = 3 if key in RATIOS else 2
        return spread(value.get("values", [])).cell(digits)
    return str(value)


def table(columns: list[tuple[str, str]], rows: list[dict[str, Any]], baseline: str) -> list[str]:
    return ["| " + " | ".join(h.format(baseline=baseline) for _, h in columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cell(row, k) for k, _ in columns) + " |" for row in rows), ""]


def markdown(report: dict[str, Any]) -> str:
    """A table per scenario, then one per scenario and prompt category: tokens/s as ``median
    [min-max]`` across repeats and as ratios to the baseline mode (and to Tandem's cloud-only mode)
    taken repeat by repeat; the acceptance figures (``clients.bench.metrics``) over every repeat."""
    machine = report.get("machine", {})
    lines = [f"Command: `{report['command']}`", "", f"CPU: {machine.get('cpu', 'not recorded')}", "",
             f"Load average (1, 5, 15 min) at start: {machine.get('load_average_start', 'not recorded')}, "
             f"at end: {machine.get('load_average_end', 'not recorded')}", "",
             f"Repeats: {report.get('repeats', 1)} (tok/s: median [min-max] across repeats; ratios taken per repeat)",
             ""]
    for name, sc in report["scenarios"].items():
        baseline = sc.get("baseline", "cloud")
        columns = [c for c in COLUMNS if not (c[0] == "vs_cloud" and baseline == "cloud")]
        lines += [f"### {name}: {sc['description']}", ""]
        lines += table(columns, list(sc["modes"].values()), baseline)
        rows = [{"category": category, "mode": mode, **figures}
                for mode, categories in sc.get("categories", {}).items() for category, figures in categories.items()]
        if rows:
            lines += [f"Per category ({name}):", ""]
            lines += table(CATEGORY_COLUMNS, sorted(rows, key=lambda r: str(r["category"])), baseline)
    ok = report["lossless_ok"]
    lines.append(f"Greedy identity with cloud-only (output token ids): **{'PASS' if ok else 'FAIL'}**"
                 + ("" if ok else f" ({len(report['mismatches'])} mismatches)"))
    lines += [f"- {m['scenario']} prompt {m['prompt_id']} mode {m['mode']} (repeat {m.get('repeat', 0)}): "
              f"{m['reason']}" for m in report["mismatches"]]
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], requests: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    scenarios = list(report["scenarios"])
    modes = sorted({m for sc in report["scenarios"].values() for m in sc["modes"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(scenarios) + 2), 4))
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        across = [spread(report["scenarios"][s]["modes"].get(mode, {}).get("tokens_per_s_spread", {}).get("values", []))
                  for s in scenarios]
        vals = [a.median for a in across]
        err = [[a.median - a.min for a in across], [a.max - a.median for a in across]]
        ax.bar([x + i * width for x in range(len(scenarios))], vals, width, yerr=err, capsize=2, label=mode)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(scenarios))], scenarios)
    ax.set_ylabel("tokens/s, median and range over repeats")
    ax.set_title("Throughput per mode and scenario")
    ax.legend()
    fig.tight_layout()
    p = out_dir / "tokens_per_s.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.5 * len(scenarios), 3.8), squeeze=False)
    for ax, s in zip(axes[0], scenarios):
        for mode in modes:
            gaps: list[float] = []
            for r in requests:
                if r["scenario"] == s and r["mode"] == mode:
                    t = r["delta_times_s"]
                    gaps.extend((b - a) * 1000 for a, b in zip(t, t[1:]))
            if gaps:
                gaps.sort()
                ax.plot(gaps, [(i + 1) / len(gaps) for i in range(len(gaps))], label=mode)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("inter-token latency (ms)")
        ax.set_ylabel("CDF")
        ax.set_title(s)
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "latency_cdf.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def write(report: dict[str, Any], requests: list[dict[str, Any]], out_dir: Path, with_plots: bool = True) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({**report, "requests": requests}, indent=1))
    (out_dir / "results.md").write_text(markdown(report))
    if with_plots:
        plots(report, requests, out_dir)
