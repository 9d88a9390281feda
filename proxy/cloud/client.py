"""HTTP client of the verify API's JSON routes: info and cloud-only generation (transport only;
sessions and rounds go over the channel, ``proxy.cloud.channel``)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator

import httpx
from pydantic import ValidationError

from proxy.cloud.auth import auth_headers
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from verifier.core.errors import ErrorBody, ErrorEnvelope
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import (
    API_PREFIX,
    GeneratedTokens,
    GenerateRequest,
    Generation,
    PromptLogprobs,
    PromptLogprobsRequest,
    ServerInfo,
)


class VerifierClient:
    def __init__(self, base_url: str, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None,
                 token: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=32, max_connections=64),
            headers=auth_headers(token),
            verify=tls if tls is not None else True,
        )
        self.bytes_up = 0
        self.bytes_down = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: str | None = None, retries: int = 0,
                    timeout_s: float | None = None) -> httpx.Response:
        headers = {"content-type": "application/json"} if body is not None else None
        timeout = httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        for attempt in range(retries + 1):
            try:
                resp = await self._client.request(method, path, content=body, headers=headers, timeout=timeout)
                break
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if attempt == retries:
                    raise VerifierUnavailable(f"{type(exc).__name__} talking to the verifier") from exc
        self.bytes_up += len(body or "")
        self.bytes_down += len(resp.content)
        _raise_for_status(resp)
        return resp

    async def info(self, timeout_s: float | None = None) -> ServerInfo:
        resp = await self._call("GET", f"{API_PREFIX}/info", timeout_s=timeout_s)
        return ServerInfo.model_validate_json(resp.content)

    async def prompt_logprobs(self, prompt_token_ids: list[int], top_logprobs: int) -> list[TokenLogprob]:
        """The target's logprobs of every prompt token after the first."""
        body = PromptLogprobsRequest(prompt_token_ids=prompt_token_ids, top_logprobs=top_logprobs).model_dump_json()
        resp = await self._call("POST", f"{API_PREFIX}/prompt_logprobs", body)
        return [t.parsed() for t in PromptLogprobs.model_validate_json(resp.content).logprobs]

    async def generate(self, gen: Generation, max_tokens: int, stop_token_ids: list[int]
                       ) -> AsyncGenerator[GeneratedTokens, None]:
        """Cloud-only decoding of ``gen``: the target generates in the cloud and streams token ids."""
        body = GenerateRequest.of(gen, max_tokens, stop_token_ids).model_dump_json(exclude_none=True)
        self.bytes_up += len(body)
        try:
            async with self._client.stream("POST", f"{API_PREFIX}/generate", content=body,
                                           headers={"content-type": "application/json"}) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    self.bytes_down += len(resp.content)
                    _raise_for_status(resp)
                async for line in resp.aiter_lines():
                    if line:
                        self.bytes_down += len(line) + 1
                        yield GeneratedTokens.model_validate_json(line)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise VerifierUnavailable(f"{type(exc).__name__} talking to the verifier") from exc


def _raise_for_status(resp: httpx.Response) -> None:
    """503 means the verifier cannot serve now; any other error means it refused the call."""
    if resp.status_code == 503:
        raise VerifierUnavailable(_message(resp))
    if resp.status_code >= 400:
        error = _error_body(resp)
        raise VerifierRejected(resp.status_code, error.message if error else f"HTTP {resp.status_code}",
                               error.code if error else None)


def _message(resp: httpx.Response) -> str:
    error = _error_body(resp)
    return error.message if error else f"HTTP {resp.status_code}"


def _error_body(resp: httpx.Response) -> ErrorBody | None:
    try:
        return ErrorEnvelope.model_validate_json(resp.content).error
    except ValidationError:
        return None
