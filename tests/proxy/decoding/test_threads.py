"""Drafter calls in worker threads (proxy.decoding.threads): a cancelled caller returns only once
its call can no longer run, however often it is cancelled; a call still queued is dropped."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from proxy.decoding.threads import DrafterCall, in_thread
from tests.harness import until


class Gated:
    """A call that blocks until the test opens its gate, counting the calls running and run."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.running = 0
        self.ran = 0

    def __call__(self, value: int) -> int:
        self.running += 1
        self.gate.wait(10)
        self.running -= 1
        self.ran += 1
        return value


@pytest.mark.parametrize("cancels", [1, 50], ids=["once", "at-every-turn"])
def test_a_cancelled_caller_returns_only_once_its_call_has_finished(cancels: int) -> None:
    """``cancels`` 50: cancelled again at every turn of the event loop, as an SSE server cancels a
    disconnected client's task."""
    async def body() -> None:
        fn = Gated()
        task = asyncio.ensure_future(in_thread(fn, 7))
        await until(lambda: fn.running == 1)
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        assert not task.done() and fn.running == 1  # still waiting for the thread
        fn.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fn.running == 0 and fn.ran == 1

    asyncio.run(body())


def test_a_call_still_queued_is_dropped_and_never_runs() -> None:
    async def body() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        first, second = Gated(), Gated()
        running = asyncio.ensure_future(in_thread(first, 1))
        await until(lambda: first.running == 1)
        queued = DrafterCall(second, 2)  # the one worker is busy: this call waits in the queue
        await asyncio.sleep(0.01)
        await queued.settle()  # dropped at once: nothing of it runs
        first.gate.set()
        second.gate.set()
        assert await running == 1
        assert await queued.task is None and second.ran == 0

    asyncio.run(body())


def test_a_result_and_a_failure_come_back_to_the_caller() -> None:
    def fails() -> None:
        raise ValueError("drafter broke")

    async def body() -> None:
        assert await in_thread(lambda x: x + 1, 1) == 2
        with pytest.raises(ValueError, match="drafter broke"):
            await in_thread(fails)
        call = DrafterCall(fails)
        await until(call.task.done)
        await call.settle()  # its failure is the caller's to read, not raised here
        assert isinstance(call.task.exception(), ValueError)

    asyncio.run(body())
