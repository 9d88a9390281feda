"""Capacity metrics of one load run, pure: goodput and SLO attainment at each TPOT SLO, TPOT
percentiles, capacity; each client count's repeats summarised by their median and spread
(``clients.bench.spread``), acceptance as ``clients.bench.metrics`` defines it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clients.bench.metrics import RoundCounts
from clients.bench.spread import Spread, spread
from clients.load.replay import RequestTiming


@dataclass(frozen=True)
class SloOutcome:
    """How the requests of one point fared against one TPOT SLO."""

    tpot_slo_ms: float
    goodput_tok_s: float  # tokens of requests whose TPOT met the SLO, per second of the point's wall time
    slo_attainment: float  # share of requests (failed ones included) whose TPOT met the SLO


@dataclass(frozen=True)
class LoadPoint:
    """One client count of one mode, one repeat."""

    mode: str
    clients: int
    requests: int
    errors: int
    wall_s: float
    tokens: int
    throughput_tok_s: float
    slos: tuple[SloOutcome, ...]  # one per TPOT SLO (``--tpot-slo-ms``), in the order given
    tpot_p50_ms: float
    tpot_p99_ms: float
    ttft_p50_ms: float
    verifier_rows_per_token: float | None  # round tokens scored by the verifier per committed token (no prefill)
    counts: RoundCounts  # rounds, drafted, accepted, rejections of the requests that succeeded
    acceptance_rate: float  # the acceptance figures of ``counts`` (clients.bench.metrics)
    accepted_per_round: float
    tokens_per_round: float
    alpha_per_token: float
    estimator_median_error: float | None = None  # the verifier's pass-time estimate, median relative error
    mismatches: int = 0  # answers that were not the target's recorded one (counted in errors too): not lossless
    repeat: int = 0

    def at(self, tpot_slo_ms: float) -> SloOutcome:
        return next(s for s in self.slos if s.tpot_slo_ms == tpot_slo_ms)


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); 0 for no data."""
    if not xs:
        return 0.0
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def goodput(timings: Sequence[RequestTiming], wall_s: float, tpot_slo_ms: float) -> SloOutcome:
    """Goodput and attainment of ``timings`` against one TPOT SLO: a request counts when it
    succeeded and its TPOT (first to last token) is within the SLO."""
    meeting = [t for t in timings if t.error is None and (x := t.tpot_s()) is not None and x * 1000 <= tpot_slo_ms]
    return SloOutcome(tpot_slo_ms, round(sum(t.tokens for t in meeting) / wall_s, 2) if wall_s else 0.0,
                      round(len(meeting) / len(timings), 4) if timings else 0.0)


def summarise(mode: str, clients: int, timings: Sequence[RequestTiming], wall_s: float,
              tpot_slos_ms: Sequence[float], verifier_rows: int | None, estimator_error: float | None = None,
              repeat: int = 0) -> LoadPoint:
    ok = [t for t in timings if t.error is None]
    tpots = [x for t in ok if (x := t.tpot_s()) is not None]
    ttfts = [x for t in ok if (x := t.ttft_s()) is not None]
    tokens = sum(t.tokens for t in ok)
    counts = RoundCounts.total(RoundCounts(t.rounds, t.drafted, t.accepted, t.rejections) for t in ok)
    figures = counts.figures()
    return LoadPoint(
        mode=mode,
        clients=clients,
        requests=len(timings),
        errors=len(timings) - len(ok),
        wall_s=round(wall_s, 3),
        tokens=tokens,
        throughput_tok_s=round(tokens / wall_s, 2) if wall_s else 0.0,
        slos=tuple(goodput(timings, wall_s, slo) for slo in tpot_slos_ms),
        tpot_p50_ms=round(percentile(tpots, 0.5) * 1000, 1),
        tpot_p99_ms=round(percentile(tpots, 0.99) * 1000, 1),
        ttft_p50_ms=round(percentile(ttfts, 0.5) * 1000, 1),
        verifier_rows_per_token=round(verifier_rows / tokens, 3) if verifier_rows is not None and tokens else None,
        counts=counts,
        acceptance_rate=figures["acceptance_rate"],
        accepted_per_round=figures["accepted_per_round"],
        tokens_per_round=figures["tokens_per_round"],
        alpha_per_token=figures["alpha_per_token"],
        estimator_median_error=round(estimator_error, 4) if estimator_error is not None else None,
        mismatches=sum(1 for t in timings if t.mismatch is not None),
        repeat=repeat,
    )


def lossless_failures(timings: Sequence[RequestTiming], where: str) -> list[str]:
    """Each answer that was not the target's, in words (``where``: the run it belongs to)."""
    return [f"{where}: {t.mismatch}" for t in timings if t.mismatch is not None]


@dataclass(frozen=True)
class LoadSummary:
    """One client count of one mode across its repeats: each figure's spread over the repeats;
    the acceptance figures over every repeat's requests."""

    mode: str
    clients: int
    repeats: int
    requests: int
    errors: int
    mismatches: int
    throughput_tok_s: Spread
    goodput_tok_s: dict[float, Spread]  # per TPOT SLO (ms)
    slo_attainment: dict[float, Spread]  # per TPOT SLO (ms)
    tpot_p50_ms: Spread
    tpot_p99_ms: Spread
    ttft_p50_ms: Spread
    verifier_rows_per_token: Spread | None
    counts: RoundCounts
    estimator_median_error: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "clients": self.clients, "repeats": self.repeats, "requests": self.requests,
                "errors": self.errors, "mismatches": self.mismatches,
                "throughput_tok_s": self.throughput_tok_s.as_dict(2),
                "goodput_tok_s": {f"{k:g}": v.as_dict(2) for k, v in self.goodput_tok_s.items()},
                "slo_attainment": {f"{k:g}": v.as_dict(4) for k, v in self.slo_attainment.items()},
                "tpot_p50_ms": self.tpot_p50_ms.as_dict(1), "tpot_p99_ms": self.tpot_p99_ms.as_dict(1),
                "ttft_p50_ms": self.ttft_p50_ms.as_dict(1),
                "verifier_rows_per_token": self.verifier_rows_per_token.as_dict(3)
                if self.verifier_rows_per_token is not None else None,
                "counts": asdict(self.counts), **self.counts.figures(),
                "estimator_median_error": self.estimator_median_error}


def across_repeats(points: Sequence[LoadPoint]) -> list[LoadSummary]:
    """``points`` grouped by (mode, clients), in order of first appearance, each group summarised."""
    groups: dict[tuple[str, int], list[LoadPoint]] = {}
    for p in points:
        groups.setdefault((p.mode, p.clients), []).append(p)
    out = []
    for (mode, clients), ps in groups.items():
        ps = sorted(ps, key=lambda p: p.repeat)
        slos = [s.tpot_slo_ms for s in ps[0].slos]
        rows = [p.verifier_rows_per_token for p in ps if p.verifier_rows_per_token is not None]
        estimates = [p.estimator_median_error for p in ps if p.estimator_median_error is not None]
        out.append(LoadSummary(
            mode=mode, clients=clients, repeats=len(ps), requests=sum(p.requests for p in ps),
            errors=sum(p.errors for p in ps), mismatches=sum(p.mismatches for p in ps),
            throughput_tok_s=spread([p.throughput_tok_s for p in ps]),
            goodput_tok_s={s: spread([p.at(s).goodput_tok_s for p in ps]) for s in slos},
            slo_attainment={s: spread([p.at(s).slo_attainment for p in ps]) for s in slos},
            tpot_p50_ms=spread([p.tpot_p50_ms for p in ps]), tpot_p99_ms=spread([p.tpot_p99_ms for p in ps]),
            ttft_p50_ms=spread([p.ttft_p50_ms for p in ps]),
            verifier_rows_per_token=spread(rows) if rows else None,
            counts=RoundCounts.total(p.counts for p in ps),
            estimator_median_error=round(statistics.median(estimates), 4) if estimates else None,
        ))
    return out


def capacity(summaries: Sequence[LoadSummary], mode: str, tpot_slo_ms: float, min_attainment: float = 0.9) -> int:
    """The largest client count at which ``mode``'s median SLO attainment (over its repeats) at
    ``tpot_slo_ms`` was at least ``min_attainment`` (0 if none)."""
    good = [s.clients for s in summaries if s.mode == mode and s.slo_attainment[tpot_slo_ms].median >= min_attainment]
    return max(good, default=0)


def _acceptance(s: LoadSummary, figure: str) -> str:
    return str(s.counts.figures()[figure]) if s.counts.drafted else "-"  # nothing drafted: no figure


def markdown(points: Sequence[LoadPoint], tpot_slos_ms: Sequence[float], command: str) -> str:
    """Per mode and client count, across repeats: ``median [min-max]`` of each timed figure;
    goodput and attainment at each TPOT SLO; capacity at each SLO."""
    summaries = across_repeats(points)
    repeats = max((s.repeats for s in summaries), default=0)
    slos = [f"{s:g}" for s in tpot_slos_ms]
    lines = [f"Command: `{command}`", "",
             f"TPOT SLOs: {', '.join(slos)} ms. Repeats: {repeats} (median [min-max] across repeats).", "",
             "| mode | clients | requests | errors | not lossless | tok/s | TPOT p50 ms | TPOT p99 ms | TTFT p50 ms | "
             "verifier rows/token | accepted/drafted | accepted/round | tokens/round | estimator error |",
             "|" + "---|" * 14]
    for s in summaries:
        rows = s.verifier_rows_per_token.cell(3) if s.verifier_rows_per_token is not None else "-"
        lines.append(f"| {s.mode} | {s.clients} | {s.requests} | {s.errors} | {s.mismatches} | "
                     f"{s.throughput_tok_s.cell()} | {s.tpot_p50_ms.cell(1)} | {s.tpot_p99_ms.cell(1)} | "
                     f"{s.ttft_p50_ms.cell(1)} | {rows} | {_acceptance(s, 'acceptance_rate')} | "
                     f"{_acceptance(s, 'accepted_per_round')} | {_acceptance(s, 'tokens_per_round')} | "
                     f"{s.estimator_median_error} |")
    lines += ["", "| mode | clients | " + " | ".join(f"goodput tok/s @{x} ms" for x in slos) + " | "
              + " | ".join(f"attainment @{x} ms" for x in slos) + " |", "|" + "---|" * (2 + 2 * len(slos))]
    for s in summaries:
        lines.append(f"| {s.mode} | {s.clients} | " + " | ".join(s.goodput_tok_s[x].cell() for x in tpot_slos_ms)
                     + " | " + " | ".join(s.slo_attainment[x].cell(3) for x in tpot_slos_ms) + " |")
    lines += ["", "| mode | " + " | ".join(f"capacity @{x} ms" for x in slos) + " |", "|" + "---|" * (1 + len(slos))]
    for mode in dict.fromkeys(s.mode for s in summaries):
        lines.append(f"| {mode} | " + " | ".join(str(capacity(summaries, mode, x)) for x in tpot_slos_ms) + " |")
    lines += ["", "Capacity: the most clients at which the median SLO attainment across repeats was >= 90%."]
    return "\n".join(lines) + "\n"
