"""The verifier's HTTP surface in memory: every error in the envelope, the info route."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.harness import BigramBackend, V, start


async def _call(method: str, path: str, backend: BigramBackend | None = None, **kwargs: object) -> httpx.Response:
    h = await start(backend)
    transport = httpx.ASGITransport(app=h.verifier_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as http:
        resp = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
    await h.aclose()
    return resp


@pytest.mark.parametrize("method,path,kwargs,status,code", [
    ("GET", "/v1/nope", {}, 404, "not_found"),
    ("POST", "/v1/info", {}, 405, "method_not_allowed"),
    ("POST", "/v1/generate", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "invalid_request"),
    ("POST", "/v1/generate", {"json": {"prompt_token_ids": [], "max_tokens": 2}}, 400, "invalid_request"),
    ("POST", "/v1/generate", {"json": {"prompt_token_ids": [V + 1], "max_tokens": 2}}, 400, "invalid_token"),
    ("POST", "/v1/generate", {"json": {"prompt_token_ids": [1], "max_tokens": 2, "protocol_version": 1}}, 400,
     "bad_protocol"),
])
def test_errors_come_in_the_envelope(method: str, path: str, kwargs: dict[str, object], status: int,
                                     code: str) -> None:
    resp = asyncio.run(_call(method, path, **kwargs))
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]


def test_a_backend_crash_is_a_500_in_the_envelope() -> None:
    resp = asyncio.run(_call("POST", "/v1/generate", BigramBackend(fail_on_extend=1),
                             json={"prompt_token_ids": [1, 2, 3], "max_tokens": 2}))
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error"


def test_info_names_the_model_and_the_protocol() -> None:
    info = asyncio.run(_call("GET", "/v1/info")).json()
    assert info == {"model": "bigram", "backend": "fake", "vocab_size": V, "max_context": 512,
                    "eos_token_ids": [0], "verifies_sampled": True, "rows_are_logits": True, "continues_output": True,
                    "engine": None, "protocol_version": 2}
