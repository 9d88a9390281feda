"""The edge's end of the verifier channel (protocol v2): transport only, no decoding logic.

One connection (a WebSocket to ``/v1/channel``, made on first use and again after it
breaks) carries the sessions of every request the edge serves. A reader task routes each
answer frame to its session's inbox; a session sends ``Open`` without waiting for an answer
and ends with a ``Close`` that nobody waits for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect

from proxy.cloud.auth import auth_headers
from proxy.cloud.errors import VerifierRejected, VerifierUnavailable
from verifier.core.codec import DraftToken, SentRound, encode_round, open_frame
from verifier.core.protocol import CHANNEL_PATH, Generation
from verifier.core.wire import (
    SUBPROTOCOL,
    ChannelError,
    Close,
    EdgeFrame,
    Failed,
    FrameError,
    Round,
    Stale,
    Verified,
    decode_verifier_frame,
    encode,
)

log = logging.getLogger(__name__)

Answer = Verified | Stale


class FrameLink(Protocol):
    """One open connection carrying binary frames both ways."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | None:
        """The next frame's bytes; None once the connection is closed."""
        ...

    async def close(self) -> None: ...


Connector = Callable[[], Awaitable[FrameLink]]


class WebSocketLink:
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def receive(self) -> bytes | None:
        try:
            data = await self._ws.recv()
        except websockets.ConnectionClosed:
            return None
        return data if isinstance(data, bytes) else data.encode()

    async def close(self) -> None:
        await self._ws.close()


def websocket_connector(base_url: str, timeout_s: float, token: str | None = None,
                        tls: ssl.SSLContext | None = None) -> Connector:
    """Connects to the verifier at ``base_url`` (http(s)://host:port; https gives wss) with
    protocol v2, presenting ``token`` as a bearer token."""
    url = "ws" + base_url.rstrip("/").removeprefix("http") + CHANNEL_PATH
    secure = url.startswith("wss://")

    async def connect_link() -> FrameLink:
        try:
            ws = await connect(url, subprotocols=[SUBPROTOCOL], compression=None, proxy=None,  # type: ignore[list-item]
                               open_timeout=min(5.0, timeout_s), max_size=1 << 20,
                               additional_headers=auth_headers(token), ssl=tls if secure else None)
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise VerifierRejected(401, "the verifier refused this edge's token (--verifier-token)",
                                       "invalid_api_key") from exc
            raise VerifierUnavailable(f"HTTP {status} connecting to the verifier's channel") from exc
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            # refused, timed out, or cut during the handshake (a proxy whose upstream is down)
            raise VerifierUnavailable(f"{type(exc).__name__} connecting to the verifier's channel") from exc
        if ws.subprotocol != SUBPROTOCOL:
            reason = "the verifier does not speak it"
            with contextlib.suppress(Exception):
                frame = decode_verifier_frame(await asyncio.wait_for(ws.recv(), timeout_s))  # type: ignore[arg-type]
                if isinstance(frame, ChannelError):
                    reason = frame.message
            await ws.close()
            raise VerifierRejected(400, f"protocol {SUBPROTOCOL} refused: {reason}", "bad_protocol")
        return WebSocketLink(ws)

    return connect_link


class ChannelSession:
    """One session on the channel: send rounds, read its answers in order."""

    def __init__(self, channel: VerifierChannel, sid: int) -> None:
        self._channel = channel
        self.sid = sid
        self._inbox: asyncio.Queue[Answer | Exception] = asyncio.Queue()
        self._early: dict[int, Answer] = {}  # answers that overtook an earlier round's (held back)
        self._next_seq = 1
        self.bytes_up = 0
        self.bytes_down = 0
        self.closed = False

    def deliver(self, answer: Answer | Exception, size: int) -> None:
        """Hand an answer to the session, in round order whatever order they arrived in (every
        round gets exactly one answer); an exception ends the session at once."""
        self.bytes_down += size
        if isinstance(answer, Exception):
            self._inbox.put_nowait(answer)
            return
        self._early[answer.seq] = answer
        while self._next_seq in self._early:
            self._inbox.put_nowait(self._early.pop(self._next_seq))
            self._next_seq += 1

    async def send(self, sent: SentRound, uploaded: int = 0) -> None:
        """Send one round of this session's speculation; its first ``uploaded`` tokens went up
        already as held batches (``send_held``): only the rest goes, as the round's last batch."""
        await self.send_round(encode_round(self.sid, sent.seq, sent.epoch, sent.start + uploaded,
                                           sent.drafts[uploaded:]))

    async def send_held(self, seq: int, epoch: int, start: int, drafts: list[DraftToken]) -> None:
        """Send a batch of round ``seq`` that more batches will follow (the verifier holds it)."""
        await self.send_round(encode_round(self.sid, seq, epoch, start, drafts, held=True))

    async def send_round(self, round_: Round) -> None:
        """Send a round frame as it is (tests send malformed ones on purpose)."""
        self.bytes_up += await self._channel.send(round_)

    def poll(self) -> Answer | None:
        """An answer already here, or None (raises what ended the session)."""
        try:
            item = self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    async def next(self, timeout_s: float | None = None) -> Answer:
        """The next answer. One that does not come within ``timeout_s`` means the link or the
        verifier stalls: the connection is dropped (every session on it is failed; the next
        session connects again) and VerifierUnavailable raised."""
        try:
            item = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            self._channel.drop(f"no answer from the verifier within {timeout_s:g} s")
            raise VerifierUnavailable(f"no answer from the verifier within {timeout_s:g} s") from None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        """End the session on the verifier; returns at once (the frame goes out in the background)."""
        if not self.closed:
            self.closed = True
            self._channel.forget(self.sid)


class VerifierChannel:
    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._link: FrameLink | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._sessions: dict[int, ChannelSession] = {}
        self._next_sid = 1
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def _connected(self) -> FrameLink:
        async with self._connecting:
            if self._closed:
                raise VerifierUnavailable("the edge is shutting down")
            if self._link is None:
                link = await self._connector()
                self._link = link
                self._reader = asyncio.create_task(self._read(link))
            return self._link

    async def send(self, frame: EdgeFrame) -> int:
        """Send one frame; its size in bytes. VerifierUnavailable when the connection is gone."""
        data = encode(frame)
        link = await self._connected()
        try:
            await link.send(data)
        except Exception as exc:  # the link broke under us: every session on it is lost
            self._lost(link, VerifierUnavailable(f"{type(exc).__name__} sending to the verifier"))
            raise VerifierUnavailable(f"{type(exc).__name__} sending to the verifier") from exc
        return len(data)

    async def open(self, gen: Generation, reproducible: bool = False) -> ChannelSession:
        """Open a session of ``gen``: the Open frame goes out now, its answer comes with the first
        round's. ``reproducible``: a seeded sampled generation, whose output must repeat for the
        same seed."""
        sid = self._next_sid
        self._next_sid += 1
        session = ChannelSession(self, sid)
        self._sessions[sid] = session
        try:
            session.bytes_up += await self.send(open_frame(sid, gen, reproducible))
        except BaseException:
            self._sessions.pop(sid, None)
            raise
        return session

    def forget(self, sid: int) -> None:
        """Drop a session and tell the verifier (a Close nobody waits for)."""
        if self._sessions.pop(sid, None) is not None and self._link is not None:
            self._in_background(self._send_quietly(Close(sid=sid)))

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_quietly(self, frame: EdgeFrame) -> None:
        """Send on the current connection, if any (a session's Close: a new connection knows no session)."""
        link = self._link
        if link is not None:
            with contextlib.suppress(Exception):
                await link.send(encode(frame))

    async def _read(self, link: FrameLink) -> None:
        reason: Exception = VerifierUnavailable("the verifier closed the channel")
        try:
            while (data := await link.receive()) is not None:
                try:
                    frame = decode_verifier_frame(data)
                except FrameError as exc:
                    reason = VerifierRejected(502, f"the verifier sent a frame this edge cannot read: {exc}",
                                              "bad_protocol")
                    break
                if isinstance(frame, ChannelError):
                    reason = (VerifierUnavailable(frame.message) if frame.code == "not_ready"
                              else VerifierRejected(400, frame.message, frame.code))
                    break
                session = self._sessions.get(frame.sid)
                if session is None:
                    continue  # a session that ended: late answers are dropped
                if isinstance(frame, Failed):
                    self._sessions.pop(frame.sid, None)
                    error: Exception = (VerifierUnavailable(frame.message) if frame.status == 503
                                        else VerifierRejected(frame.status, frame.message, frame.code))
                    session.deliver(error, len(data))
                else:
                    session.deliver(frame, len(data))
        except Exception as exc:  # noqa: BLE001 - any failure of the link ends its sessions
            reason = VerifierUnavailable(f"{type(exc).__name__} reading from the verifier")
        self._lost(link, reason)

    def drop(self, reason: str) -> None:
        """Give up the current connection (it stalls): its sessions fail, the next one reconnects."""
        if self._link is not None:
            self._lost(self._link, VerifierUnavailable(reason))

    def _lost(self, link: FrameLink, reason: Exception) -> None:
        """The connection is gone: fail its sessions; the next session connects again."""
        if self._link is not link:
            return
        self._link = None
        for session in self._sessions.values():
            session.deliver(reason, 0)
        self._sessions.clear()
        self._in_background(self._close_quietly(link))

    async def _close_quietly(self, link: FrameLink) -> None:
        with contextlib.suppress(Exception):
            await link.close()

    async def aclose(self) -> None:
        if self._background:  # Close frames still going out
            await asyncio.wait(list(self._background), timeout=5)
        self._closed = True
        link, self._link = self._link, None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if link is not None:
            await self._close_quietly(link)
        if self._background:  # Close frames and closes of lost links still going out
            await asyncio.wait(list(self._background), timeout=5)
