"""vLLM's ``AsyncLLM`` on an event loop of its own, a thread of this process.

The scheduler's worker thread hands it a batch and waits (``run``), and cloud-only streams and
live rounds are bridged to the server's loop (``on_loop``), so rounds and streams share vLLM's
continuous batching. It runs apart from the server's loop, rather than on it as vLLM's own server
does, because that way Tandem's cloud-only streams kept pace with vLLM's server, and on the
server's loop they fell behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EngineLoop:
    """The loop vLLM's engine runs on, started at once; ``stop`` ends it with the engine."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()

    def on_loop(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run a coroutine on vLLM's loop; a future of its result on the caller's loop (which runs
        to its end on vLLM's loop whoever waits, unless the future is cancelled)."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on vLLM's loop and wait for it (from any thread but that loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self, engine: Any) -> None:
        """Shut vLLM's engine down, then this loop and its thread."""
        engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        # vLLM 0.32 closes its frontend's sockets but leaves their zmq context to the garbage collector,
        # which destroys it with a ResourceWarning wherever that happens to run
        resources = getattr(getattr(engine, "engine_core", None), "resources", None)
        context = getattr(resources, "ctx", None)
        if context is not None and not context.closed:
            context.destroy(linger=0)


async def next_item(stream: AsyncIterator[Any]) -> Any:
    """The next item of an async iterator, None at its end (a future cannot carry StopAsyncIteration)."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
