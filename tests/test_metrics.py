"""Both servers' Prometheus metrics move with real requests (the apps in memory; e2e scrapes the
real processes) and follow the naming conventions."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Harness, start

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def verifier_metrics(h: Harness) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.verifier_app), base_url="http://v") as client:
        return (await client.get("/metrics")).text


async def scrape(h: Harness) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], ...]:
    edge = await h.edge_http().get("/metrics")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.verifier_app), base_url="http://v") as client:
        verifier = await client.get("/metrics")
    assert edge.status_code == verifier.status_code == 200
    assert edge.headers["content-type"].startswith("text/plain")
    return samples(edge.text), samples(verifier.text)


def test_metrics_move_with_requests_and_are_named_by_convention() -> None:
    async def body() -> None:
        h = await start()
        edge0, verifier0 = await scrape(h)
        for mode in ("speculative", "cloud"):
            r = await h.edge_http().post("/v1/chat/completions", json={
                "model": "bigram", "messages": MESSAGES, "max_tokens": 8, "temperature": 0,
                "tandem": {"mode": mode, "gamma": 3}})
            assert r.status_code == 200
        bad = await h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": MESSAGES, "logit_bias": {"99": 1}})
        assert bad.status_code == 400
        edge1, verifier1 = await scrape(h)

        def moved(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert moved(edge0, edge1, "tandem_edge_requests_total", mode="speculative", outcome="length") == 1
        assert moved(edge0, edge1, "tandem_edge_requests_total", mode="cloud", outcome="length") == 1
        assert moved(edge0, edge1, "tandem_edge_output_tokens_total") == 16
        assert moved(edge0, edge1, "tandem_edge_time_to_first_token_seconds_count") == 2
        assert moved(edge0, edge1, "tandem_edge_time_per_output_token_seconds_count") == 2
        assert moved(edge0, edge1, "tandem_edge_draft_tokens_total") > 0
        assert moved(edge0, edge1, "tandem_edge_verifier_bytes_total", direction="up") > 0
        assert edge1[("tandem_edge_drafters", ())] == 1 and edge1[("tandem_edge_drafters_in_use", ())] == 0
        assert moved(verifier0, verifier1, "tandem_verifier_sessions_created_total") >= 2
        assert moved(verifier0, verifier1, "tandem_verifier_rounds_total") > 0
        assert moved(verifier0, verifier1, "tandem_verifier_round_accepted_tokens_count") > 0
        assert moved(verifier0, verifier1, "tandem_verifier_batch_items_count") > 0
        assert moved(verifier0, verifier1, "tandem_verifier_pass_seconds_count") > 0
        assert moved(verifier0, verifier1, "tandem_verifier_deadlines_total", outcome="met") + \
            moved(verifier0, verifier1, "tandem_verifier_deadlines_total", outcome="missed") > 0
        assert moved(verifier0, verifier1, "tandem_verifier_prefill_seconds_count") >= 2
        assert verifier1[("tandem_verifier_backend_info", (("backend", "fake"), ("max_context", "512"),
                                                            ("model", "bigram"), ("vocab_size", "16")))] == 1
        for name, _ in [*edge1, *verifier1]:
            assert name.startswith(("tandem_edge_", "tandem_verifier_")), name
        await h.aclose()

    asyncio.run(body())


def test_refusals_are_counted_by_code() -> None:
    async def body() -> None:
        h = await start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=h.verifier_app), base_url="http://v") as client:
            r = await client.post("/v1/generate", json={"prompt_token_ids": [99], "max_tokens": 1})
        assert r.status_code == 400
        _, verifier = await scrape(h)
        assert verifier[("tandem_verifier_errors_total", (("code", "invalid_token"),))] == 1
        await h.aclose()

    asyncio.run(body())


DASHBOARD = Path(__file__).resolve().parents[1] / "helm" / "tandem-verifier" / "dashboards" / "tandem-overview.json"


def test_every_dashboard_query_names_an_exported_metric() -> None:
    async def body() -> set[str]:
        h = await start()
        r = await h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": MESSAGES, "max_tokens": 4, "tandem": {"mode": "speculative"}})
        assert r.status_code == 200
        names = set()
        for text in [(await h.edge_http().get("/metrics")).text, await verifier_metrics(h)]:
            for family in text_string_to_metric_families(text):  # labelled counters may have no sample yet
                names |= {family.name, f"{family.name}_total"} | {s.name for s in family.samples}
        await h.aclose()
        return names

    exported = asyncio.run(body())
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"\btandem_[a-z_]+", e)}
    assert len(exprs) >= 8 and named
    assert named <= exported, sorted(named - exported)
