"""The edge's OpenAI routes in memory: the real OpenAI SDK, exact chunk shapes, the SSE error path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.harness import BigramBackend, Harness, start

MESSAGES = [{"role": "user", "content": "hi"}]


def sse_objects(text: str) -> list[Any]:
    """The data payloads of an SSE body; "[DONE]" kept as a string."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


async def post(h: Harness, path: str, body: dict[str, Any]) -> httpx.Response:
    return await h.edge_http().post(path, json=body)


def sdk(h: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://edge.test/v1", api_key="unused", max_retries=0,
                              http_client=h.edge_http())


def test_the_sdk_gets_the_same_text_streamed_and_not() -> None:
    async def body() -> None:
        h = await start()
        client = sdk(h)
        full = await client.chat.completions.create(model="bigram", messages=MESSAGES,  # type: ignore[arg-type]
                                                    temperature=0, max_tokens=9)
        assert full.choices[0].finish_reason == "length" and full.usage is not None
        assert full.usage.completion_tokens == 9
        text = full.choices[0].message.content
        stream = await client.chat.completions.create(model="bigram", messages=MESSAGES,  # type: ignore[arg-type]
                                                      temperature=0, max_tokens=9, stream=True)
        parts = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        assert "".join(parts) == text and len(text or "") == 9
        completion = await client.completions.create(model="bigram", prompt="abc", temperature=0, max_tokens=5)
        assert completion.object == "text_completion" and len(completion.choices[0].text) == 5
        models = await client.models.list()
        assert [m.id for m in models.data] == ["bigram"]
        await h.aclose()

    asyncio.run(body())


def test_stream_chunks_have_openais_shape() -> None:
    async def body() -> None:
        h = await start()
        resp = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "temperature": 0,
                                                      "max_tokens": 4, "stream": True,
                                                      "stream_options": {"include_usage": True}})
        objs = sse_objects(resp.text)
        assert objs[-1] == "[DONE]"
        chunks = objs[:-1]
        first, *middle, final, usage = chunks
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all(set(c["choices"][0]["delta"]) == {"content"} for c in middle) and len(middle) == 4
        assert all(c["usage"] is None and "tandem" not in c for c in [first, *middle])
        assert final["choices"][0]["delta"] == {} and final["choices"][0]["finish_reason"] == "length"
        assert final["tandem"]["mode"] == "auto" and final["usage"] is None
        assert final["tandem"]["path"].startswith("pipelined") and final["tandem"]["why"]  # which path, and why
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
        for c in chunks:
            assert c["object"] == "chat.completion.chunk" and c["id"] == first["id"]
            assert c["system_fingerprint"] is None
        plain = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "max_tokens": 2,
                                                       "temperature": 0, "stream": True})
        assert all("usage" not in c for c in sse_objects(plain.text)[:-1])
        await h.aclose()

    asyncio.run(body())


def test_full_response_shape() -> None:
    async def body() -> None:
        h = await start()
        resp = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "temperature": 0,
                                                      "max_tokens": 3})
        obj = resp.json()
        assert set(obj) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage", "tandem"}
        assert obj["choices"] == [{"index": 0, "message": {"role": "assistant", "content": obj["choices"][0][
            "message"]["content"]}, "logprobs": None, "finish_reason": "length"}]
        assert {"rounds", "drafted", "accepted", "acceptance_rate", "elapsed_ms"} <= set(obj["tandem"])
        await h.aclose()

    asyncio.run(body())


def test_a_verifier_failure_mid_stream_ends_with_an_error_event_then_done() -> None:
    async def body() -> None:
        h = await start(BigramBackend(fail_on_extend=4))  # prefill and two rounds succeed
        resp = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "temperature": 0,
                                                      "max_tokens": 30, "stream": True})
        assert resp.status_code == 200
        objs = sse_objects(resp.text)
        assert objs[-1] == "[DONE]" and "error" in objs[-2]
        assert objs[-2]["error"]["code"] == "verifier_error"
        assert any(o["choices"][0]["delta"].get("content") for o in objs[:-2])  # text came before the error
        assert h.verifier.ready_engine().session_count == 0
        await h.aclose()

    asyncio.run(body())


def test_a_failure_before_the_first_token_is_an_http_error() -> None:
    async def body() -> None:
        h = await start(BigramBackend(fail_on_extend=1))  # the prefill fails
        resp = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "stream": True})
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "verifier_error"
        await h.aclose()

    asyncio.run(body())


@pytest.mark.parametrize("body,status,param", [
    ({"model": "other", "messages": MESSAGES}, 404, "model"),
    ({"model": "bigram", "messages": MESSAGES, "max_tokens": 10_000}, 400, "max_tokens"),
    # tool_choice auto (the default with tools) on a chat template that cannot show tools
    ({"model": "bigram", "messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
     "tool_choice"),
])
def test_refusals(body: dict[str, Any], status: int, param: str) -> None:
    async def run() -> None:
        h = await start()
        resp = await post(h, "/v1/chat/completions", body)
        assert resp.status_code == status and resp.json()["error"]["param"] == param
        await h.aclose()

    asyncio.run(run())


def test_unknown_fields_are_accepted_and_reported_or_refused_when_strict() -> None:
    body = {"model": "bigram", "messages": [{"role": "user", "content": "hi", "refusal": None}], "max_tokens": 2,
            "frobnicate": 1, "héllo, 🌍": 2, "stream_options": {"include_usage": True, "x_extra": 1}, "stream": True}

    async def run() -> None:
        h = await start()
        resp = await post(h, "/v1/chat/completions", body)
        assert resp.status_code == 200
        assert resp.headers["x-tandem-ignored-fields"] == \
            "frobnicate,h%C3%A9llo%2C%20%F0%9F%8C%8D,stream_options.x_extra,messages[].refusal"
        plain = await post(h, "/v1/chat/completions", {**body, "stream": False, "stream_options": None})
        assert plain.status_code == 200
        assert plain.headers["x-tandem-ignored-fields"] == "frobnicate,h%C3%A9llo%2C%20%F0%9F%8C%8D,messages[].refusal"
        clean = await post(h, "/v1/chat/completions", {"model": "bigram", "messages": MESSAGES, "max_tokens": 2})
        assert "x-tandem-ignored-fields" not in clean.headers
        assert h.service.intake.ignored_seen == {"frobnicate", "héllo, 🌍", "stream_options.x_extra",
                                                 "messages[].refusal"}
        await h.aclose()
        strict = await start(strict_fields=True)
        resp = await post(strict, "/v1/chat/completions", body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "frobnicate"
        assert resp.json()["error"]["code"] == "unsupported_parameter"
        await strict.aclose()

    asyncio.run(run())

