"""The channel over a real WebSocket: the verifier app served by uvicorn on loopback (over the
bigram backend, so no model loads), the edge's websocket connector, and a raw websockets
client for what a broken or foreign edge sends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import connect

from clients.load.rounds import stop_and_wait_round
from clients.procs import free_port
from proxy.cloud.channel import ChannelSession, VerifierChannel, websocket_connector
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from proxy.decoding.speculation import SpeculationState
from tests.harness import BigramBackend, V, greedy_continuation, until
from verifier.app import create_app
from verifier.core.codec import DraftToken, encode_round
from verifier.core.protocol import CHANNEL_PATH, Generation
from verifier.core.wire import SUBPROTOCOL, ChannelError, Open, Verified, decode_verifier_frame, encode


class ServedVerifier:
    """The verifier app in a uvicorn server on its own thread."""

    def __init__(self, backend: BigramBackend) -> None:
        self.backend = backend
        self.app = create_app(lambda: backend, session_ttl_s=60.0, max_sessions=8)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedVerifier:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not (self.server.started and self.app.state.service.engine is not None):
            if time.monotonic() > deadline:
                raise RuntimeError("the verifier app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def live_sessions(self) -> int:
        return int(self.app.state.service.engine.session_count)


@pytest.fixture(scope="module")
def served() -> Iterator[ServedVerifier]:
    with ServedVerifier(BigramBackend()) as verifier:
        yield verifier


@contextlib.asynccontextmanager
async def channel_to(url: str) -> AsyncIterator[VerifierChannel]:
    channel = VerifierChannel(websocket_connector(url, 10))
    try:
        yield channel
    finally:
        await channel.aclose()


async def greedy_run(session: ChannelSession, prompt: list[int], n: int) -> list[int]:
    """Stop-and-wait rounds with a perfect two-token draft until n tokens are verified."""
    state = SpeculationState.start(prompt)
    while state.verified_end - len(prompt) < n:
        drafts = [DraftToken(t, None) for t in greedy_continuation(state.tokens[-1], 2)]
        await stop_and_wait_round(session, state, drafts)
    return state.tokens[len(prompt):len(prompt) + n]


def test_many_sessions_share_one_connection_and_stay_exact(served: ServedVerifier) -> None:
    async def body() -> None:
        async with channel_to(served.url) as channel:
            sessions = [await channel.open(Generation(prompt_token_ids=[i + 1])) for i in range(5)]
            outs = await asyncio.gather(*(greedy_run(s, [i + 1], 9) for i, s in enumerate(sessions)))
            assert outs == [greedy_continuation(i + 1, 9) for i in range(5)]
            assert channel.sessions == 5 and all(s.bytes_up > 0 and s.bytes_down > 0 for s in sessions)
            for s in sessions:
                s.close()
        await until(lambda: served.live_sessions() == 0, 30)  # Close frames (never waited for) end every session

    asyncio.run(body())


def test_refusals_keep_the_verifiers_status_and_code(served: ServedVerifier) -> None:
    async def body() -> None:
        async with channel_to(served.url) as channel:
            bad = await channel.open(Generation(prompt_token_ids=[V + 5]))  # the Open is refused after it went out
            with pytest.raises(VerifierRejected) as err:
                await bad.next()
            assert (err.value.status, err.value.code) == (400, "invalid_token")
            ok = await channel.open(Generation(prompt_token_ids=[1, 2]))
            await ok.send_round(encode_round(ok.sid, 1, 0, 5, [DraftToken(3, None)]))  # starts past the end
            with pytest.raises(VerifierRejected) as err:
                await ok.next()
            assert err.value.code == "invalid_round"
            again = await channel.open(Generation(prompt_token_ids=[1, 2]))  # the connection itself is fine
            assert await greedy_run(again, [1, 2], 3) == greedy_continuation(2, 3)

    asyncio.run(body())


def test_a_dropped_connection_fails_its_sessions_and_the_next_one_reconnects(served: ServedVerifier) -> None:
    async def body() -> None:
        async with channel_to(served.url) as channel:
            first = await channel.open(Generation(prompt_token_ids=[1]))
            link = channel._link  # noqa: SLF001 - cut the connection under the session
            assert link is not None
            await link.close()
            with pytest.raises(VerifierUnavailable):
                await first.next()
            second = await channel.open(Generation(prompt_token_ids=[3]))
            assert await greedy_run(second, [3], 4) == greedy_continuation(3, 4)
        await until(lambda: served.live_sessions() == 0, 30)  # the verifier ends the dropped connection's session

    asyncio.run(body())


def test_no_verifier_is_unavailable() -> None:
    async def body() -> None:
        async with channel_to(f"http://127.0.0.1:{free_port()}") as channel:
            with pytest.raises(VerifierUnavailable):
                await channel.open(Generation(prompt_token_ids=[1]))

    asyncio.run(body())


def test_a_connection_cut_during_the_handshake_is_unavailable() -> None:
    """A proxy that accepts and then hangs up (its upstream verifier is down): a loss the edge
    can resume from, not an internal error."""

    async def body() -> None:
        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.transport.abort()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with channel_to(f"http://127.0.0.1:{port}") as channel:
            with pytest.raises(VerifierUnavailable):
                await channel.open(Generation(prompt_token_ids=[1]))
        server.close()
        await server.wait_closed()

    asyncio.run(body())


def test_a_connection_closed_before_the_handshake_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same cut seen a moment earlier: websockets reports ConnectionClosedError from inside
    the handshake (found by clients/faults.py through the relay); it is a loss too."""
    import proxy.cloud.channel as vc

    async def closed(*args: object, **kwargs: object) -> object:
        raise websockets.ConnectionClosedError(None, None)

    monkeypatch.setattr(vc, "connect", closed)

    async def body() -> None:
        with pytest.raises(VerifierUnavailable):
            await vc.websocket_connector("http://127.0.0.1:1", 5)()

    asyncio.run(body())


def test_a_foreign_protocol_version_and_garbage_are_refused_clearly(served: ServedVerifier) -> None:
    async def body() -> None:
        url = f"ws://127.0.0.1:{served.port}{CHANNEL_PATH}"
        async with connect(url, subprotocols=["tandem.verify.v1"], proxy=None) as ws:  # type: ignore[list-item]
            assert ws.subprotocol is None
            frame = decode_verifier_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(frame, ChannelError) and frame.code == "bad_protocol" and SUBPROTOCOL in frame.message
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        async with connect(url, subprotocols=[SUBPROTOCOL], proxy=None) as ws:  # type: ignore[list-item]
            await ws.send(encode(Open(sid=1, prompt_token_ids=[1])))
            await ws.send(b"\x93\x63garbage")
            frame = decode_verifier_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(frame, ChannelError) and frame.code == "invalid_frame"
        # and the server goes on serving
        async with channel_to(served.url) as channel:
            session = await channel.open(Generation(prompt_token_ids=[2]))
            assert await greedy_run(session, [2], 2) == greedy_continuation(2, 2)

    asyncio.run(body())


def test_verified_answers_are_a_few_bytes(served: ServedVerifier) -> None:
    async def body() -> None:
        async with channel_to(served.url) as channel:
            session = await channel.open(Generation(prompt_token_ids=[1]))
            await session.send_round(encode_round(session.sid, 1, 0, 1, [DraftToken(2, None), DraftToken(3, None)]))
            answer = await session.next()
            assert isinstance(answer, Verified) and answer.accepted == 2
            assert session.bytes_down < 20 and session.bytes_up < 64  # the Open frame (4 floats), then 12

    asyncio.run(body())
