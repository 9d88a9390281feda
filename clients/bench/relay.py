"""A delaying, rate-limiting TCP relay (user-space netem): listen here, forward upstream.

Each accepted connection gets two pumps (up: client->server, down: server->client). A pump
reads chunks (at most ``segment`` bytes), asks the link model when each arrives, and a
writer delivers them at that time. Byte counters per direction serve the benchmark. The link's
time (``clock``) and its waits (``sleep``) are the event loop's unless given: a test passes its
own pair to check the delays the relay decides without waiting them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from clients.bench.link import Direction, DirectionSpec, Outage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkSpec:
    up: DirectionSpec = DirectionSpec()
    down: DirectionSpec = DirectionSpec()
    outages: tuple[Outage, ...] = ()
    outage_mode: str = "stall"  # "stall" | "reset"
    seed: int = 0


@dataclass
class Counters:
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0


@dataclass
class LinkRelay:
    spec: LinkSpec
    upstream_host: str
    upstream_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    segment: int = 16384
    counters: Counters = field(default_factory=Counters)
    clock: Callable[[], float] = time.monotonic  # seconds, the clock asyncio's event loop keeps
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # a wait of that many seconds on it

    def __post_init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._t0 = 0.0
        self._up = Direction(self.spec.up, self.spec.outages, self.spec.seed)
        self._down = Direction(self.spec.down, self.spec.outages, self.spec.seed + 1)
        self._writers: set[asyncio.StreamWriter] = set()
        self._reset_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def now(self) -> float:
        """Seconds since the link's time zero."""
        return self.clock() - self._t0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.listen_port)
        self.restart_clock()

    def restart_clock(self) -> None:
        """Make now the link's time zero (schedules and outages count from here)."""
        self._t0 = self.clock()
        self._up = Direction(self.spec.up, self.spec.outages, self.spec.seed)
        self._down = Direction(self.spec.down, self.spec.outages, self.spec.seed + 1)
        if self._reset_task is not None:
            self._reset_task.cancel()
        if self.spec.outage_mode == "reset" and self.spec.outages:
            self._reset_task = asyncio.create_task(self._reset_on_outages())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._reset_task is not None:
            self._reset_task.cancel()
        with contextlib.suppress(Exception):
            if self._server is not None:
                await self._server.wait_closed()

    async def _reset_on_outages(self) -> None:
        for outage in sorted(self.spec.outages, key=lambda o: o.start_s):
            await self.sleep(max(0.0, outage.start_s - self.now()))
            for w in list(self._writers):
                w.transport.abort()

    def _is_down(self) -> bool:
        return self.spec.outage_mode == "reset" and self._up.down_at(self.now()) is not None

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        if self._is_down():
            c_writer.transport.abort()
            return
        try:
            s_reader, s_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            c_writer.transport.abort()
            return
        self.counters.connections += 1
        self._writers.update((c_writer, s_writer))
        try:
            await asyncio.gather(self._pump(c_reader, s_writer, "up"), self._pump(s_reader, c_writer, "down"))
        finally:
            for w in (c_writer, s_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    break
                at, data = item
                wait = at - self.now()
                if wait > 0:
                    await self.sleep(wait)
                writer.write(data)
                await writer.drain()
                if name == "up":
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
            if writer.can_write_eof():
                writer.write_eof()

        sender = loop.create_task(deliver())
        try:
            while True:
                data = await reader.read(self.segment)
                if not data:
                    break
                direction = self._up if name == "up" else self._down  # current clock, even on old connections
                queue.put_nowait((direction.schedule(self.now(), len(data)), data))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(ConnectionError, OSError):
                await sender
