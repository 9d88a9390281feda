"""The edge's Prometheus metrics (``GET /metrics``), in a registry of the app's own.

Every request is observed once, when it ends, from its ``tandem`` statistics and its timings
(``EdgeMetrics.finished``/``failed``); the drafter pool is read at scrape time. Names follow
Prometheus conventions: ``tandem_edge_*``, base units, ``_total`` counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.decoding.request import Stats
from proxy.draft.pool import DrafterPool

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATIO = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _PoolCollector(Collector):
    def __init__(self, pool: DrafterPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("tandem_edge_drafters_in_use", "draft-model slots leased", value=self._pool.in_use)
        yield GaugeMetricFamily("tandem_edge_drafters", "draft-model slots", value=self._pool.size)
        yield GaugeMetricFamily("tandem_edge_requests_waiting", "requests waiting for a drafter",
                                value=self._pool.waiting)


class EdgeMetrics:
    def __init__(self, pool: DrafterPool) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_PoolCollector(pool))
        self.requests = Counter("tandem_edge_requests_total", "generations by mode and how they ended "
                                "(stop, length, error)", ["mode", "outcome"], registry=r)
        self.ttft = Histogram("tandem_edge_time_to_first_token_seconds", "request start to its first text",
                              buckets=SECONDS, registry=r)
        self.tpot = Histogram("tandem_edge_time_per_output_token_seconds", "after the first token, per token",
                              buckets=SECONDS, registry=r)
        self.output_tokens = Counter("tandem_edge_output_tokens_total", "completion tokens", registry=r)
        self.rounds = Counter("tandem_edge_rounds_total", "verification rounds (and cloud chunks)", registry=r)
        self.draft_tokens = Counter("tandem_edge_draft_tokens_total", "draft tokens sent for verification",
                                    registry=r)
        self.accepted_tokens = Counter("tandem_edge_accepted_tokens_total", "draft tokens the verifier accepted",
                                       registry=r)
        self.acceptance = Histogram("tandem_edge_request_acceptance_ratio", "accepted / drafted per request that "
                                    "drafted", buckets=RATIO, registry=r)
        self.rounds_per_token = Histogram("tandem_edge_rounds_per_token", "rounds / output tokens per request",
                                          buckets=RATIO, registry=r)
        self.bytes = Counter("tandem_edge_verifier_bytes_total", "bytes to and from the verifier", ["direction"],
                             registry=r)
        self.round_trip = Histogram("tandem_edge_round_trip_seconds", "a round's send-to-answer time, the "
                                    "request's mean", buckets=SECONDS, registry=r)
        self.degraded = Counter("tandem_edge_degraded_requests_total", "requests the draft model finished alone",
                                registry=r)
        self.cloud_losses = Counter("tandem_edge_cloud_losses_total", "times a request lost the verifier",
                                    registry=r)
        self.prediction_tokens = Counter("tandem_edge_prediction_tokens_total", "tokens of requests' predictions "
                                         "(Predicted Outputs) that appeared in the completion (accepted) or not "
                                         "(rejected)", ["outcome"], registry=r)
        self.prediction_drafts = Counter("tandem_edge_prediction_draft_tokens_total", "draft tokens taken from "
                                         "predictions, sent (drafted) and accepted by the verifier", ["outcome"],
                                         registry=r)

    def finished(self, stats: Stats, finish_reason: str, tokens: int, ttft_s: float | None,
                 elapsed_s: float) -> None:
        """A generation that ended normally (its ``tandem`` statistics)."""
        mode = str(stats.get("mode", "unknown"))
        self.requests.labels(mode, finish_reason).inc()
        self.output_tokens.inc(tokens)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
            if tokens > 1:
                self.tpot.observe((elapsed_s - ttft_s) / (tokens - 1))
        rounds, drafted, accepted = (int(stats.get(k, 0)) for k in ("rounds", "drafted", "accepted"))
        self.rounds.inc(rounds)
        self.draft_tokens.inc(drafted)
        self.accepted_tokens.inc(accepted)
        if drafted:
            self.acceptance.observe(accepted / drafted)
        if tokens:
            self.rounds_per_token.observe(rounds / tokens)
        self.bytes.labels("up").inc(int(stats.get("bytes_up", 0)))
        self.bytes.labels("down").inc(int(stats.get("bytes_down", 0)))
        if rounds and drafted:
            self.round_trip.observe(float(stats.get("round_trip_ms", 0.0)) / 1000 / rounds)
        if stats.get("degraded"):
            self.degraded.inc()
        self.cloud_losses.inc(int(stats.get("cloud_losses", 0)))
        if "accepted_prediction_tokens" in stats:
            self.prediction_tokens.labels("accepted").inc(int(stats["accepted_prediction_tokens"]))
            self.prediction_tokens.labels("rejected").inc(int(stats["rejected_prediction_tokens"]))
            self.prediction_drafts.labels("drafted").inc(int(stats.get("prediction_drafted", 0)))
            self.prediction_drafts.labels("accepted").inc(int(stats.get("prediction_accepted", 0)))

    def failed(self, mode: str) -> None:
        self.requests.labels(mode, "error").inc()
