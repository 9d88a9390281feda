"""A pool of drafters: one per concurrent request, each with its own KV cache."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from proxy.draft.base import Drafter


class DrafterPool:
    def __init__(self, drafters: Sequence[Drafter]) -> None:
        if not drafters:
            raise ValueError("a drafter pool needs at least one drafter")
        self.size = len(drafters)
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
        """A drafter for one request, waiting for one to be free; returned when the block ends."""
        drafter = await self._idle.get()
        try:
            yield drafter
        finally:
            self._idle.put_nowait(drafter)
