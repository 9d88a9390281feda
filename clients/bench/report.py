"""Benchmark outputs: JSON, a Markdown table, and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = [
    ("mode", "mode"), ("tokens_per_s", "tok/s"), ("vs_cloud", "x cloud"), ("vs_vllm", "x vllm-serve"),
    ("ttft_ms_median", "TTFT ms"),
    ("tpot_ms_median", "TPOT ms"),
    ("tpot_ms_p90", "TPOT p90"), ("acceptance_rate", "accepted/drafted"), ("alpha", "alpha"),
    ("mean_accepted_length", "acc/round"),
    ("rounds_per_token", "rounds/tok"), ("rows_per_token", "rows/tok"), ("stale_rounds", "stale"),
    ("wasted_drafts_per_token", "wasted/tok"),
    ("bytes_up_per_token", "B up/tok"), ("bytes_down_per_token", "B down/tok"),
    ("cloud_ms_per_token", "cloud ms/tok"), ("edge_cpu_ms_per_token", "edge CPU ms/tok"),
    ("bound_tokens_per_s", "bound tok/s"), ("measured_over_bound", "meas/bound"),
]


def markdown(report: dict[str, Any]) -> str:
    """A table per scenario; each mode's tokens/s as a ratio to Tandem's cloud-only mode and, when it
    ran, to vLLM's own server (the strongest baseline a user could pick instead)."""
    lines = [f"Command: `{report['command']}`", "", f"CPU: {report.get('machine', {}).get('cpu', 'not recorded')}", ""]
    for name, sc in report["scenarios"].items():
        lines.append(f"### {name}: {sc['description']}")
        lines.append("")
        lines.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        cloud = sc["modes"].get("cloud", {}).get("tokens_per_s", 0.0)
        vllm = sc["modes"].get("vllm-serve", {}).get("tokens_per_s", 0.0)
        for summary in sc["modes"].values():
            row = {**summary, "vs_cloud": round(summary["tokens_per_s"] / cloud, 2) if cloud else "",
                   "vs_vllm": round(summary["tokens_per_s"] / vllm, 2) if vllm else ""}
            lines.append("| " + " | ".join(str(row.get(k, "")) for k, _ in COLUMNS) + " |")
        lines.append("")
    lines.append(f"Greedy identity with cloud-only: **{'PASS' if report['lossless_ok'] else 'FAIL'}**"
                 + ("" if report["lossless_ok"] else f" ({len(report['mismatches'])} mismatches)"))
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
        vals = [report["scenarios"][s]["modes"].get(mode, {}).get("tokens_per_s", 0) for s in scenarios]
        ax.bar([x + i * width for x in range(len(scenarios))], vals, width, label=mode)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(scenarios))], scenarios)
    ax.set_ylabel("tokens/s (higher is better)")
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
