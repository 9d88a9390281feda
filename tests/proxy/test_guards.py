"""The edge's guards (in memory): malformed and hostile requests get a clear 4xx, never a 500,
and the edge keeps serving; limits, API keys, CORS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BigramBackend, Harness, greedy_continuation, start
from verifier.core.asgi import KeyRing
from verifier.core.protocol import SamplingParams

MESSAGES = [{"role": "user", "content": "hi"}]


async def raw_post(h: Harness, path: str, text: str) -> Any:
    return await h.edge_http().post(path, content=text.encode("utf-8"), headers={"content-type": "application/json"})


async def assert_serves_on(h: Harness) -> None:
    """After a refusal the edge still answers a valid request."""
    ok = await h.edge_http().post("/v1/chat/completions", json={"model": "bigram", "messages": MESSAGES,
                                                                  "max_tokens": 3, "temperature": 0})
    assert ok.status_code == 200


LONE = '"a\\ud800b"'  # JSON text of a string with an unpaired high surrogate


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", '{"model":"bigram","messages":[{"role":"user","content":LONE}]}'),
    ("/v1/chat/completions", '{"model":"bigram","messages":[{"role":"user","content":[{"type":"text","text":LONE}]}]}'),
    ("/v1/completions", '{"model":"bigram","prompt":LONE}'),
    ("/v1/chat/completions", '{"model":LONE,"messages":[{"role":"user","content":"hi"}]}'),
    ("/v1/chat/completions", '{"model":"bigram","messages":[{"role":"user","content":"hi"}],"stop":[LONE]}'),
])
def test_a_lone_surrogate_is_a_400_and_the_edge_serves_on(path: str, body: str) -> None:
    async def run() -> None:
        h = await start()
        resp = await raw_post(h, path, body.replace("LONE", LONE))
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["code"] == "invalid_value" and "surrogate" in err["message"]
        await assert_serves_on(h)
        await h.aclose()

    asyncio.run(run())


def test_a_paired_surrogate_escape_is_ordinary_text() -> None:
    async def run() -> None:
        h = await start()
        body = '{"model":"bigram","messages":[{"role":"user","content":"\\ud83d\\ude00"}],"max_tokens":2}'
        assert (await raw_post(h, "/v1/chat/completions", body)).status_code == 200
        await h.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("temperature", [1e-310, 5e-324, 9.9e-6])
def test_a_temperature_below_the_floor_is_greedy_on_both_sides(temperature: float) -> None:
    assert SamplingParams(temperature=temperature).temperature == 0.0
    assert SamplingParams(temperature=1e-5).temperature == 1e-5

    async def run() -> None:
        h = await start()
        target = "".join(chr(ord("a") + t - 1) for t in greedy_continuation(ord("c") % 15 + 1, 6))
        for mode in ("speculative", "cloud", "draft"):
            texts = []
            for t in (temperature, 0.0):
                resp = await h.edge_http().post("/v1/completions", json={
                    "model": "bigram", "prompt": "c", "max_tokens": 6, "temperature": t, "tandem": {"mode": mode}})
                assert resp.status_code == 200, (mode, resp.text)
                texts.append(resp.json()["choices"][0]["text"])
            assert texts[0] == texts[1], mode
            assert mode == "draft" or texts[0] == target
        await h.aclose()

    asyncio.run(run())


def test_an_oversized_body_is_a_413_before_parsing() -> None:
    async def run() -> None:
        h = await start(max_body_bytes=64 << 10)
        big = json.dumps({"model": "bigram", "messages": [{"role": "user", "content": "x" * (100 << 10)}]})
        resp = await raw_post(h, "/v1/chat/completions", big)
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"

        async def chunked() -> Any:  # no Content-Length: counted as it streams in
            for _ in range(100):
                yield b"x" * 1024

        resp = await h.edge_http().post("/v1/chat/completions", content=chunked(),
                                        headers={"content-type": "application/json"})
        assert resp.status_code == 413
        await assert_serves_on(h)
        await h.aclose()

    asyncio.run(run())


def test_too_many_messages_or_too_long_a_prompt_is_refused_before_templating() -> None:
    async def run() -> None:
        h = await start()
        many = {"model": "bigram", "messages": [{"role": "user", "content": "a"}] * 5000}
        resp = await h.edge_http().post("/v1/chat/completions", json=many)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
        limit = h.service.intake.context_limit()
        long = {"model": "bigram", "prompt": "a" * (limit * h.service.intake.longest_piece + 1)}
        resp = await h.edge_http().post("/v1/completions", json=long)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
        await h.aclose()

    asyncio.run(run())


def test_requests_beyond_the_waiting_room_get_429_with_retry_after() -> None:
    async def run() -> None:
        h = await start(BigramBackend(pass_s=0.02), slots=1, max_waiting=0)
        slow = asyncio.create_task(h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": MESSAGES, "max_tokens": 30, "temperature": 0,
            "tandem": {"mode": "speculative"}}))
        while h.service.drafters.in_use == 0:
            await asyncio.sleep(0.001)
        refused = await h.edge_http().post("/v1/chat/completions", json={
            "model": "bigram", "messages": MESSAGES, "max_tokens": 3, "tandem": {"mode": "speculative"}})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert (await slow).status_code == 200
        await h.aclose()

    asyncio.run(run())


def test_api_keys_guard_the_v1_routes_only() -> None:
    async def run() -> None:
        h = await start(api_key=["k-one", "k-two"])
        http = h.edge_http()
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "k-one"}):
            resp = await http.get("/v1/models", headers=headers)
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
            assert resp.headers["www-authenticate"] == "Bearer"
        for key in ("k-one", "k-two"):
            assert (await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})).status_code == 200
        assert (await http.get("/livez")).status_code == 200
        await h.aclose()

    asyncio.run(run())


def test_cors_is_off_unless_origins_are_configured() -> None:
    async def run() -> None:
        preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
        closed = await start()
        resp = await closed.edge_http().options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in resp.headers
        await closed.aclose()
        opened = await start(cors_origins=["https://app.example"])
        resp = await opened.edge_http().options("/v1/chat/completions", headers=preflight)
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "https://app.example"
        await opened.aclose()

    asyncio.run(run())


def test_a_key_file_names_its_holders(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# app keys\nalice k-a\n\nk-b  # no name\n")
    ring = KeyRing.load(["k-c"], str(keys))
    assert ring.holder("Bearer k-a") == "alice" and ring.holder("bearer k-b") == "keys:4"
    assert ring.holder("Bearer k-c") == "key-1" and ring.holder("Bearer k-d") is None and ring.holder(None) is None
    assert not KeyRing.load().enabled
