"""Drafter calls in worker threads. A drafter (a llama.cpp model) must never run two calls at
once, nor go back to its pool while a call still runs. A cancelled asyncio task does not stop
its thread, so ``DrafterCall.settle`` returns only once its call can no longer run: finished,
or dropped before its thread took it up, however often the waiting task is cancelled meanwhile
(an SSE server cancels a disconnected client's task again at every turn of the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, Literal, TypeVar, cast

T = TypeVar("T")

_POLL_S = 0.001  # how often a cancelled waiter looks again whether the call still runs


def lower_priority() -> None:
    """Let the calling thread run only on CPU time nothing else of this process wants (Linux, where
    a thread has a nice value of its own; elsewhere, or when refused, nothing changes). Threads it
    starts (llama.cpp's workers) inherit it. It cannot be undone: give it to a thread of its own."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class DrafterCall(Generic[T]):
    """``fn(*args)`` in a worker thread (of ``executor``, else the event loop's default one), started
    at once; ``task`` gives its result (None when it was dropped before it ran)."""

    def __init__(self, fn: Callable[..., T], *args: object, executor: Executor | None = None) -> None:
        self._fn, self._args = fn, args
        self._lock = threading.Lock()
        self._state: Literal["queued", "running", "done", "dropped"] = "queued"
        self.task: asyncio.Future[T | None] = asyncio.ensure_future(self._in_thread(executor))

    async def _in_thread(self, executor: Executor | None) -> T | None:
        with self._lock:
            if self._state == "dropped":  # before it was handed to a thread
                return None
        return await asyncio.get_running_loop().run_in_executor(executor, self._run)

    def _run(self) -> T | None:
        with self._lock:
            if self._state == "dropped":
                return None
            self._state = "running"
        try:
            return self._fn(*self._args)
        finally:
            with self._lock:
                self._state = "done"

    def _idle(self) -> bool:
        """Whether the call can no longer run (a call still queued is dropped here)."""
        with self._lock:
            if self._state == "queued":
                self._state = "dropped"
            return self._state != "running"

    async def settle(self) -> None:
        """Return once the call can no longer run (a queued call is dropped, a running one waited
        for); its failure is not raised here. A cancellation meanwhile is raised after that."""
        cancelled = False
        if not self._idle():  # running: wait for it
            try:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.task)
            except asyncio.CancelledError:
                cancelled = True
        while not self._idle():
            try:
                await asyncio.sleep(_POLL_S)
            except asyncio.CancelledError:
                cancelled = True
        if self.task.done() and not self.task.cancelled():
            self.task.exception()  # retrieved: a failed call that nobody awaited is not logged as lost
        if cancelled:
            raise asyncio.CancelledError


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread; if the caller is cancelled, the thread is waited for
    first (``DrafterCall.settle``)."""
    call = DrafterCall(fn, *args)
    try:
        return cast(T, await asyncio.shield(call.task))
    except asyncio.CancelledError:
        await call.settle()
        raise
