"""Capacity metrics of one load run, pure: goodput, SLO attainment, TPOT percentiles, capacity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clients.load.replay import RequestTiming


@dataclass(frozen=True)
class LoadPoint:
    mode: str
    clients: int
    requests: int
    errors: int
    wall_s: float
    tokens: int
    throughput_tok_s: float
    goodput_tok_s: float  # tokens of requests whose TPOT met the SLO, per second
    slo_attainment: float  # share of requests whose TPOT met the SLO
    tpot_p50_ms: float
    tpot_p99_ms: float
    ttft_p50_ms: float
    verifier_rows_per_token: float | None  # round tokens scored by the verifier per committed token (no prefill)
    acceptance: float | None  # accepted / drafted
    estimator_median_error: float | None = None  # the verifier's pass-time estimate, median relative error


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); 0 for no data."""
    if not xs:
        return 0.0
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def summarise(mode: str, clients: int, timings: Sequence[RequestTiming], wall_s: float, tpot_slo_s: float,
              verifier_rows: int | None, estimator_error: float | None = None) -> LoadPoint:
    ok = [t for t in timings if t.error is None]
    tpots = [x for t in ok if (x := t.tpot_s()) is not None]
    ttfts = [x for t in ok if (x := t.ttft_s()) is not None]
    meeting = [t for t in ok if (x := t.tpot_s()) is not None and x <= tpot_slo_s]
    tokens = sum(t.tokens for t in ok)
    drafted = sum(t.drafted for t in ok)
    return LoadPoint(
        mode=mode,
        clients=clients,
        requests=len(timings),
        errors=len(timings) - len(ok),
        wall_s=round(wall_s, 3),
        tokens=tokens,
        throughput_tok_s=round(tokens / wall_s, 2) if wall_s else 0.0,
        goodput_tok_s=round(sum(t.tokens for t in meeting) / wall_s, 2) if wall_s else 0.0,
        slo_attainment=round(len(meeting) / len(timings), 4) if timings else 0.0,
        tpot_p50_ms=round(percentile(tpots, 0.5) * 1000, 1),
        tpot_p99_ms=round(percentile(tpots, 0.99) * 1000, 1),
        ttft_p50_ms=round(percentile(ttfts, 0.5) * 1000, 1),
        verifier_rows_per_token=round(verifier_rows / tokens, 3) if verifier_rows is not None and tokens else None,
        acceptance=round(sum(t.accepted for t in ok) / drafted, 4) if drafted else None,
        estimator_median_error=round(estimator_error, 4) if estimator_error is not None else None,
    )


def capacity(points: Sequence[LoadPoint], mode: str, min_attainment: float = 0.9) -> int:
    """The largest client count at which ``mode`` kept at least ``min_attainment`` of its requests
    within the SLO (0 if none did)."""
    good = [p.clients for p in points if p.mode == mode and p.slo_attainment >= min_attainment]
    return max(good, default=0)


def markdown(points: Sequence[LoadPoint], tpot_slo_ms: float, command: str) -> str:
    lines = [f"Command: `{command}`", "", f"TPOT SLO: {tpot_slo_ms:g} ms.", "",
             "| mode | clients | requests | errors | tok/s | goodput tok/s | SLO attainment | TPOT p50 ms | "
             "TPOT p99 ms | TTFT p50 ms | verifier rows/token | acceptance | estimator error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.mode} | {p.clients} | {p.requests} | {p.errors} | {p.throughput_tok_s} | "
                     f"{p.goodput_tok_s} | {p.slo_attainment} | {p.tpot_p50_ms} | {p.tpot_p99_ms} | "
                     f"{p.ttft_p50_ms} | {p.verifier_rows_per_token} | {p.acceptance} | {p.estimator_median_error} |")
    lines += ["", "| mode | capacity (clients at >= 90% SLO attainment) |", "|---|---|"]
    for mode in dict.fromkeys(p.mode for p in points):
        lines.append(f"| {mode} | {capacity(points, mode)} |")
    return "\n".join(lines) + "\n"
