"""A pool of drafters: one per concurrent request, each with its own KV cache."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from proxy.draft.base import Drafter


class PoolFull(Exception):
    """More requests already wait for a drafter than the pool lets wait."""


class DrafterPool:
    def __init__(self, drafters: Sequence[Drafter], max_waiting: int | None = None) -> None:
        """``max_waiting``: requests that may wait for a free drafter (None: any number)."""
        if not drafters:
            raise ValueError("a drafter pool needs at least one drafter")
        self.size = len(drafters)
        self.max_waiting = max_waiting
        self.waiting = 0
        #: whether every drafter can generate alone (edge-only mode, confidence cut-off)
        self.standalone = all(d.standalone for d in drafters)
        self._idle: asyncio.Queue[Drafter] = asyncio.Queue()
        for d in drafters:
            self._idle.put_nowait(d)

    @property
    def in_use(self) -> int:
        return self.size - self._idle.qsize()

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Drafter]:
        """A drafter for one request, waiting for one to be free; returned when the block ends.
        PoolFull at once when ``max_waiting`` requests wait already."""
        if self._idle.empty() and self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise PoolFull(f"{self.waiting} requests already wait for one of {self.size} draft slots")
        self.waiting += 1
        try:
            drafter = await self._idle.get()
        finally:
            self.waiting -= 1
        drafter.begin()
        try:
            yield drafter
        finally:
            self._idle.put_nowait(drafter)
