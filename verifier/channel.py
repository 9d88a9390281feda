"""One edge's persistent channel on the verifier: frames in, sessions and rounds out.

Transport-agnostic (the WebSocket route in ``verifier.app`` and in-memory tests both drive
it): ``serve`` reads frames until the edge goes away, then ends every session the edge
opened. Each session gets one worker task with an inbox, so its rounds are scored one after
the other in the order they arrived, while sessions of the same connection proceed
independently (their rounds share the scheduler's batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import ValidationError

from verifier.core.codec import logprobs_to_wire, session_of
from verifier.core.protocol import SessionCreate
from verifier.core.wire import (
    MAX_ROUND_DRAFTS,
    ChannelError,
    Close,
    EdgeFrame,
    Failed,
    FrameError,
    Open,
    Round,
    Stale,
    Verified,
    VerifierFrame,
    decode_edge_frame,
    encode,
    joined,
)
from verifier.engine import EngineError, VerifierEngine

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[bytes | None]]  # None: the edge closed the connection
Send = Callable[[bytes], Awaitable[None]]


def _session_or_400(frame: Open) -> SessionCreate:
    """An Open frame's session parameters (``verifier.core.codec.session_of``), its
    ValidationError as EngineError 400."""
    try:
        return session_of(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise EngineError(400, f"{where}: {first['msg']}", "invalid_request") from exc


@dataclass
class EdgeQuota:
    """What one edge may hold at once: sessions over all its connections, rounds waiting in one
    session. Shared by the connections of one key holder (one per connection without keys)."""

    max_sessions: int = 32
    max_queued_rounds: int = 64
    sessions: int = 0


class ChannelConnection:
    def __init__(self, engine: VerifierEngine, send: Send, quota: EdgeQuota | None = None,
                 on_failed: Callable[[str | None], None] | None = None) -> None:
        self._engine = engine
        self._on_failed = on_failed  # told the code of every Failed frame sent (the metrics)
        self._quota = quota or EdgeQuota()
        self._send_raw = send
        self._send_lock = asyncio.Lock()
        self._inboxes: dict[int, asyncio.Queue[Round]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._held: dict[int, Round] = {}  # per session: the batches of a round whose last has not come

    async def send(self, frame: VerifierFrame) -> None:
        if isinstance(frame, Failed) and self._on_failed is not None:
            self._on_failed(frame.code)
        async with self._send_lock:
            await self._send_raw(encode(frame))

    async def serve(self, receive: Receive) -> None:
        """Handle frames until the edge closes the connection or sends one that is not a frame."""
        try:
            while (data := await receive()) is not None:
                try:
                    frame = decode_edge_frame(data)
                except FrameError as exc:
                    await self.send(ChannelError(code="invalid_frame", message=f"not a protocol frame: {exc}"))
                    return
                await self._dispatch(frame)
        finally:
            for sid in list(self._workers):
                self._end(sid)

    async def _dispatch(self, frame: EdgeFrame) -> None:
        if isinstance(frame, Open):
            if frame.sid in self._workers:
                await self.send(Failed(sid=frame.sid, seq=0, status=400, code="invalid_session",
                                       message=f"session {frame.sid} is already open on this connection"))
                return
            if self._quota.sessions >= self._quota.max_sessions:
                await self.send(Failed(sid=frame.sid, seq=0, status=429, code="too_many_sessions",
                                       message=f"this edge holds {self._quota.sessions} sessions, its limit",
                                       retry_after_ms=1000))
                return
            self._quota.sessions += 1
            inbox: asyncio.Queue[Round] = asyncio.Queue()
            self._inboxes[frame.sid] = inbox
            worker = asyncio.create_task(self._session(frame, inbox))
            worker.add_done_callback(self._release)  # also when cancelled before it ever ran
            self._workers[frame.sid] = worker
        elif isinstance(frame, Round):
            queue = self._inboxes.get(frame.sid)
            if queue is None:
                return  # a round of a session that failed or was closed: nobody waits for it
            held = self._held.pop(frame.sid, None)
            if held is not None:  # a batch that does not continue the held ones drops them
                frame = joined(held, frame) or frame
            if frame.held and len(frame.draft_token_ids) <= MAX_ROUND_DRAFTS:
                self._held[frame.sid] = frame
                return  # (a longer one goes on to be refused by the engine)
            if queue.qsize() >= self._quota.max_queued_rounds:
                self._end(frame.sid)
                await self.send(Failed(sid=frame.sid, seq=frame.seq, status=429, code="too_many_rounds",
                                       message=f"more than {self._quota.max_queued_rounds} rounds of one session "
                                       "wait; the session is ended", retry_after_ms=1000))
                return
            queue.put_nowait(frame)
        elif isinstance(frame, Close):
            self._end(frame.sid)

    def _release(self, _: asyncio.Task[None]) -> None:
        self._quota.sessions -= 1

    def _forget(self, sid: int) -> asyncio.Task[None] | None:
        """Drop a session's inbox, held batches and worker; returns the worker."""
        self._inboxes.pop(sid, None)
        self._held.pop(sid, None)
        return self._workers.pop(sid, None)

    def _end(self, sid: int) -> None:
        worker = self._forget(sid)
        if worker is not None:
            worker.cancel()  # its `finally` ends the engine's session (rounds in flight finish first)

    async def _session(self, opened: Open, inbox: asyncio.Queue[Round]) -> None:
        sid = opened.sid
        session_id: str | None = None
        seq = 0
        try:
            created = await self._engine.create_session(_session_or_400(opened))
            session_id = created.session_id
            while True:
                r = await inbox.get()
                seq = r.seq
                result = await self._engine.verify(session_id, r)
                if result is None:
                    await self.send(Stale(sid=sid, seq=r.seq))
                else:
                    await self.send(Verified(sid=sid, seq=r.seq, accepted=result.accepted,
                                             next_token_id=result.next_token_id,
                                             committed_tokens=result.committed_tokens,
                                             compute_us=round(result.compute_s * 1e6),
                                             queue_us=round(result.queue_s * 1e6),
                                             logprobs=logprobs_to_wire(result.logprobs) if result.logprobs else None,
                                             live=result.route == "live"))
        except Exception as exc:
            err = exc if isinstance(exc, EngineError) else None
            if err is None:  # a bug: this session ends, the server goes on
                log.exception("session worker failed", extra={"sid": sid})
                err = EngineError(500, f"internal error: {type(exc).__name__}", "internal_error")
            retry = math.ceil(err.retry_after_s * 1000) if err.retry_after_s else 0
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self.send(Failed(sid=sid, seq=seq, status=err.status, code=err.code, message=str(err),
                                       retry_after_ms=retry))
        finally:
            if self._workers.get(sid) is asyncio.current_task():  # not ended by Close or the connection
                self._forget(sid)
            if session_id is not None:
                self._engine.end_session(session_id)
