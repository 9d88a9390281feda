"""One scenario's results across repeats, summarised per mode and per prompt category (pure).

Each repeat is one pass over the prompts with every mode. Per mode (and per category within it):
tokens/s per repeat (its tokens over its summed request times) with their median and spread
(``clients.bench.spread``), and the ratio to the baseline mode and to cloud-only taken repeat by
repeat, on the same prompts in the same repeat. The per-mode figures of ``clients.bench.measure``
(acceptance, latency, bytes, bounds) pool every repeat's requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clients.bench.measure import Mode, RequestResult, summarise, tokens_per_s
from clients.bench.metrics import RoundCounts
from clients.bench.spread import Spread, ratios, spread

CLOUD = "cloud"


def per_repeat(results: Sequence[RequestResult], repeats: int) -> list[float]:
    """Tokens/s of each repeat's requests, in repeat order."""
    return [tokens_per_s([r for r in results if r.repeat == k]) for k in range(repeats)]


@dataclass(frozen=True)
class Throughput:
    """Tokens/s across repeats, and the per-repeat ratios to the baseline's and cloud-only's."""

    tokens_per_s: Spread
    vs_baseline: Spread
    vs_cloud: Spread

    @classmethod
    def of(cls, results: Sequence[RequestResult], baseline: Sequence[RequestResult], cloud: Sequence[RequestResult],
           repeats: int) -> Throughput:
        mine = per_repeat(results, repeats)
        return cls(spread(mine), spread(ratios(mine, per_repeat(baseline, repeats)) if baseline else []),
                   spread(ratios(mine, per_repeat(cloud, repeats)) if cloud else []))

    def as_dict(self) -> dict[str, Any]:
        return {"tokens_per_s_spread": self.tokens_per_s.as_dict(2), "vs_baseline": self.vs_baseline.as_dict(3),
                "vs_cloud": self.vs_cloud.as_dict(3)}


def path_counts(results: Sequence[RequestResult]) -> str:
    """How many requests each sequence of paths served (``tandem.path``, e.g. ``cloud>stop_and_wait``),
    most first; empty for a mode that reports none (vLLM's own server)."""
    counts = Counter(str(r.stats["path"]) for r in results if r.stats.get("path"))
    return ", ".join(f"{path} {n}" for path, n in counts.most_common())


def by_category(results: Sequence[RequestResult], baseline: Sequence[RequestResult], cloud: Sequence[RequestResult],
                repeats: int) -> dict[str, dict[str, Any]]:
    """Per prompt category (in order of first appearance): requests, tokens, the acceptance
    figures (``clients.bench.metrics``) over every repeat, and tokens/s across repeats."""
    out: dict[str, dict[str, Any]] = {}
    for category in dict.fromkeys(r.category for r in results):
        mine = [r for r in results if r.category == category]
        counts = RoundCounts.total(RoundCounts.from_stats(r.stats) for r in mine)
        throughput = Throughput.of(mine, [r for r in baseline if r.category == category],
                                   [r for r in cloud if r.category == category], repeats)
        out[category] = {"requests": len(mine), "tokens": sum(r.completion_tokens for r in mine),
                         **counts.figures(), **throughput.as_dict(), "paths": path_counts(mine)}
    return out


def scenario_summary(results: Sequence[RequestResult], modes: Sequence[Mode], rtt_s: float, baseline: str,
                     repeats: int) -> dict[str, Any]:
    """``results`` (one scenario's) per mode: its summary with its throughput across repeats; and
    per mode and category."""
    of = {m.name: [r for r in results if r.mode == m.name] for m in modes}
    base, cloud = of.get(baseline, []), of.get(CLOUD, [])
    return {
        "baseline": baseline,
        "modes": {m.name: {**summarise(of[m.name], m, rtt_s).as_dict(),
                           **Throughput.of(of[m.name], base, cloud, repeats).as_dict(),
                           "paths": path_counts(of[m.name])} for m in modes},
        "categories": {m.name: by_category(of[m.name], base, cloud, repeats) for m in modes},
    }
