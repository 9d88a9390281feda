"""The verify API client in memory: retries that never apply a round twice, error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from proxy.verifier_client import VerifierRejected, VerifierUnavailable
from tests.harness import start
from verifier.core.drafting import DraftToken
from verifier.core.protocol import SamplingParams


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fails chosen verify calls with a connection error, before or after the verifier saw them."""

    def __init__(self, inner: httpx.AsyncBaseTransport, fail: Callable[[int], str | None]) -> None:
        self.inner = inner
        self.fail = fail  # verify call number -> None | "before" | "after"
        self.verify_calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/verify"):
            return await self.inner.handle_async_request(request)
        self.verify_calls += 1
        when = self.fail(self.verify_calls)
        if when == "before":
            raise httpx.ConnectError("link down", request=request)
        response = await self.inner.handle_async_request(request)
        if when == "after":
            await response.aread()
            raise httpx.ReadError("reply lost", request=request)
        return response


def _drafts(*ids: int) -> list[DraftToken]:
    return [DraftToken(t, None) for t in ids]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_lost_verify_call_is_retried_once_and_applied_once(when: str) -> None:
    async def body() -> None:
        flaky: list[FlakyTransport] = []

        def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            flaky.append(FlakyTransport(inner, lambda n: when if n == 1 else None))
            return flaky[0]

        h = await start(transport_wrapper=wrap)
        session = await h.client.create_session([1, 2], SamplingParams())
        result = await h.client.verify(session.session_id, 1, _drafts(3, 4))
        assert (result.accepted, result.next_token_id, result.committed_tokens) == (2, 5, 5)
        assert flaky[0].verify_calls == 2
        engine = h.verifier.ready_engine()
        assert engine.session(session.session_id).committed == [1, 2, 3, 4, 5]  # not applied twice
        assert engine.stats.rounds == 1
        await h.aclose()

    asyncio.run(body())


def test_two_lost_calls_mean_the_verifier_is_unavailable() -> None:
    async def body() -> None:
        h = await start(transport_wrapper=lambda inner: FlakyTransport(inner, lambda n: "before"))
        session = await h.client.create_session([1], SamplingParams())
        with pytest.raises(VerifierUnavailable):
            await h.client.verify(session.session_id, 1, _drafts(2))
        await h.aclose()

    asyncio.run(body())


def test_refusals_keep_the_verifiers_status_and_code() -> None:
    async def body() -> None:
        h = await start()
        with pytest.raises(VerifierRejected) as err:
            await h.client.verify("no-such-session", 1, _drafts(2))
        assert (err.value.status, err.value.code) == (404, "session_not_found")
        session = await h.client.create_session([1], SamplingParams())
        with pytest.raises(VerifierRejected) as err:
            await h.client.verify(session.session_id, 3, _drafts(2))
        assert (err.value.status, err.value.code) == (409, "round_out_of_order")
        await h.aclose()

    asyncio.run(body())


def test_a_verifier_still_loading_is_unavailable() -> None:
    async def body() -> None:
        h = await start()
        h.verifier.engine = None  # as before the backend finished loading
        with pytest.raises(VerifierUnavailable):
            await h.client.create_session([1], SamplingParams())
        await h.aclose()

    asyncio.run(body())
