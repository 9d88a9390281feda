"""Shadow drafting (proxy.decoding.shadow): guesses compared with the cloud's tokens only when
made for them, never two draft calls at once, and the drafter free again once it is closed."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from proxy.decoding.shadow import ShadowDraft
from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling
from tests.harness import until
from verifier.core.codec import DraftToken

GREEDY = DraftSampling(0.0, 1.0, 0, 16)


class GatedDrafter(Drafter):
    """Guesses ``last + 1`` (or ``wrong_at``'s context length: ``last + 2``); each call waits for
    the test to open its gate, and records how many calls ran at once."""

    def __init__(self, wrong_at: frozenset[int] = frozenset()) -> None:
        self.wrong_at = wrong_at
        self.gate = threading.Semaphore(0)
        self.running = 0
        self.most_running = 0
        self.finished = 0
        self.contexts: list[int] = []

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.gate.acquire()
        self.contexts.append(len(context))
        self.running -= 1
        self.finished += 1
        return DraftToken(context[-1] + (2 if len(context) in self.wrong_at else 1), None)

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        raise NotImplementedError


def test_ready_guesses_are_compared_and_late_ones_never_waited_for() -> None:
    async def body() -> None:
        drafter = GatedDrafter(wrong_at=frozenset({3}))
        shadow = ShadowDraft(drafter, GREEDY, [1])
        shadow.start()  # guesses 2 after [1]
        drafter.gate.release()
        await until(lambda: drafter.finished == 1)
        shadow.saw([2])  # right; guesses after [1, 2]
        drafter.gate.release()
        await until(lambda: drafter.finished == 2)
        shadow.saw([3])  # right; guesses after [1, 2, 3] (wrongly: 5)
        await until(lambda: drafter.running == 1)
        shadow.saw([4])  # that guess is still running: 4 goes uncompared, no second call starts
        assert (shadow.agreed, shadow.missed) == (2, 0) and drafter.running == 1
        drafter.gate.release()
        await until(lambda: drafter.finished == 3)
        shadow.saw([5, 6])  # the finished guess was for [1, 2, 3], not [1, 2, 3, 4]: not compared
        assert (shadow.agreed, shadow.missed) == (2, 0)
        drafter.gate.release()
        await until(lambda: drafter.finished == 4)
        shadow.saw([7])  # guessed after [..., 5, 6]: right
        assert (shadow.agreed, shadow.missed, shadow.compared) == (3, 0, 3)
        assert drafter.contexts == [1, 2, 3, 6] and drafter.most_running == 1
        await until(lambda: drafter.running == 1)  # the guess after [..., 7] runs
        drafter.gate.release()
        await shadow.close()  # and is waited for
        assert drafter.running == 0 and drafter.finished == 5
        shadow.saw([8])  # a guess that has not started when the shadow closes is dropped, never run
        await shadow.close()
        drafter.gate.release()
        await asyncio.sleep(0.01)
        assert drafter.finished == 5 and drafter.contexts[-1] == 7

    asyncio.run(body())


def test_a_wrong_guess_is_counted_missed() -> None:
    async def body() -> None:
        drafter = GatedDrafter(wrong_at=frozenset({2}))
        shadow = ShadowDraft(drafter, GREEDY, [1])
        shadow.start()
        for done, token in enumerate((2, 3, 4), start=1):
            drafter.gate.release()
            await until(lambda: drafter.finished == done)  # noqa: B023 - awaited within the iteration
            shadow.saw([token])
        assert (shadow.agreed, shadow.missed) == (2, 1)
        drafter.gate.release()
        await shadow.close()

    asyncio.run(body())


def test_a_sampled_request_has_no_shadow() -> None:
    with pytest.raises(ValueError, match="greedy"):
        ShadowDraft(GatedDrafter(), DraftSampling(0.8, 1.0, 0, 16), [1])


class PriorityDrafter(GatedDrafter):
    """Records the nice value of the thread each guess runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.niceness: list[int] = []

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().draft(context, sampling)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_guesses_run_at_the_lowest_priority_and_the_stream_does_not() -> None:
    """On an edge short of CPU, a guess must give way to the stream it shadows: its thread is
    niced to 19, the event loop's is left as it was."""
    async def body() -> None:
        drafter = PriorityDrafter()
        shadow = ShadowDraft(drafter, GREEDY, [1])
        shadow.start()
        drafter.gate.release()
        await until(lambda: drafter.finished == 1)
        shadow.saw([2])
        await until(lambda: drafter.running == 1)  # the second guess, in the same thread
        drafter.gate.release()
        await shadow.close()
        assert drafter.niceness == [19, 19]
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19

    asyncio.run(body())
