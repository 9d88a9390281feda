"""The verifier's Prometheus metrics (``GET /metrics``), in a registry of the app's own.

Counters and gauges the engine and the scheduler already keep are read at scrape time (a
collector over ``EngineStats``/``SchedulerStats``); distributions are observed as things happen,
through plain callbacks the engine and the scheduler call (they import nothing of this module).
Names follow Prometheus conventions: ``tandem_verifier_*``, base units, ``_total`` counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from verifier.core.protocol import ModelInfo
from verifier.engine import VerifierEngine
from verifier.scheduling.scheduler import BatchRecord

#: seconds buckets from a millisecond to a minute
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATIO = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class _EngineCollector(Collector):
    """What the engine and its scheduler count, read when scraped."""

    def __init__(self, engine_of: Callable[[], VerifierEngine | None]) -> None:
        self._engine_of = engine_of

    def collect(self) -> Iterator[Metric]:
        engine = self._engine_of()
        if engine is None:
            return
        s, q = engine.stats, engine.scheduler.stats
        yield GaugeMetricFamily("tandem_verifier_sessions", "live sessions", value=engine.session_count)
        yield GaugeMetricFamily("tandem_verifier_live_sessions", "sessions held live in the backend's engine",
                                value=engine.live_sessions)
        yield GaugeMetricFamily("tandem_verifier_queue_depth", "jobs waiting for a batch",
                                value=engine.scheduler.queue_depth)
        for name, doc, value in (
            ("sessions_created", "sessions opened", s.sessions_created),
            ("sessions_expired", "sessions freed after --session-ttl-s idle", s.sessions_expired),
            ("rounds", "verify rounds scored", s.rounds),
            ("live_rounds", "of the rounds: verified inside the backend's live requests (vLLM's spec decoding)",
             s.live_rounds),
            ("live_rows", "tokens live rounds sent the backend's engine to score", s.live_rows),
            ("live_sessions_created", "sessions opened on the backend's live route", s.live_sessions_created),
            ("live_demoted", "live sessions moved to the row route (the live route's KV share ran out)",
             s.live_demoted),
            ("draft_tokens", "draft tokens verified", s.drafted),
            ("accepted_tokens", "draft tokens accepted", s.accepted),
            ("stale_rounds", "rounds answered stale, without computing", s.stale_rounds),
            ("native_streams", "cloud-only generations decoded by the backend itself", s.native_streams),
            ("batches", "batched backend passes", q.batches),
            ("batch_rows", "new tokens scored, over all passes", q.batch_rows),
            ("jobs_refused", "jobs refused by the queue bound", q.refused),
            ("queue_wait_seconds", "time jobs waited for their pass, summed", q.queue_wait_s),
            ("compute_seconds", "backend pass time, summed", q.compute_s),
        ):
            yield CounterMetricFamily(f"tandem_verifier_{name}", doc, value=value)


class VerifierMetrics:
    """The verifier's metrics; ``engine_of`` gives the engine once the backend has loaded."""

    def __init__(self, engine_of: Callable[[], VerifierEngine | None]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_EngineCollector(engine_of))
        self.round_accepted = Histogram("tandem_verifier_round_accepted_tokens", "draft tokens accepted per round",
                                        buckets=(0, 1, 2, 3, 4, 5, 6, 8, 12, 16, 32, 64), registry=r)
        self.round_acceptance = Histogram("tandem_verifier_round_acceptance_ratio",
                                          "accepted / drafted per round with drafts", buckets=RATIO, registry=r)
        self.batch_items = Histogram("tandem_verifier_batch_items", "rounds and prefill chunks per pass",
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.batch_rows = Histogram("tandem_verifier_batch_rows", "new tokens scored per pass",
                                    buckets=(1, 4, 16, 64, 128, 256, 512, 1024), registry=r)
        self.pass_seconds = Histogram("tandem_verifier_pass_seconds", "backend pass time, measured", buckets=SECONDS,
                                      registry=r)
        self.pass_predicted_seconds = Histogram("tandem_verifier_pass_predicted_seconds",
                                                "backend pass time, as the estimator predicted it before the pass",
                                                buckets=SECONDS, registry=r)
        self.queue_wait = Histogram("tandem_verifier_queue_wait_seconds", "a job's wait for its pass",
                                    buckets=SECONDS, registry=r)
        self.deadlines = Counter("tandem_verifier_deadlines_total", "jobs by whether their pass ended by their "
                                 "deadline (SLO attainment)", ["outcome"], registry=r)
        self.prefill = Histogram("tandem_verifier_prefill_seconds", "a session's prompt prefill", buckets=SECONDS,
                                 registry=r)
        self.errors = Counter("tandem_verifier_errors_total", "requests and rounds refused or failed, by code",
                              ["code"], registry=r)
        self.backend = Info("tandem_verifier_backend", "the served model and backend", registry=r)

    def loaded(self, info: ModelInfo) -> None:
        labels = {"model": info.model, "backend": info.backend, "vocab_size": str(info.vocab_size),
                  "max_context": str(info.max_context)}
        if info.engine is not None:  # vLLM's parallel layout and engine settings
            labels |= {k: str(v) for k, v in info.engine.model_dump(exclude={"engine_args"}).items()}
        self.backend.info(labels)

    def on_round(self, drafted: int, accepted: int) -> None:
        self.round_accepted.observe(accepted)
        if drafted:
            self.round_acceptance.observe(accepted / drafted)

    def on_batch(self, record: BatchRecord) -> None:
        self.batch_items.observe(record.items)
        self.batch_rows.observe(record.rows)
        self.pass_seconds.observe(record.measured_s)
        self.pass_predicted_seconds.observe(record.predicted_s)
        for wait in record.queue_waits:
            self.queue_wait.observe(wait)
        self.deadlines.labels("met").inc(record.items - record.deadline_misses)
        self.deadlines.labels("missed").inc(record.deadline_misses)

    def on_error(self, code: str | None) -> None:
        self.errors.labels(code or "unknown").inc()
