"""Emulate a slower edge CPU: pin the edge process to cores and duty-cycle it."""

from __future__ import annotations

import os
import signal
import threading
import time


def parse_cpus(text: str) -> tuple[int, ...] | None:
    """A comma list of core numbers; None for an empty one (no pinning)."""
    return tuple(int(c) for c in text.split(",") if c.strip()) or None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class DutyCycle:
    """Lets a process run ``duty`` of every ``period_s`` (SIGSTOP / SIGCONT), in a thread."""

    def __init__(self, pid: int, duty: float, period_s: float = 0.02) -> None:
        if not 0 < duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        self._pid = pid
        self._on = duty * period_s
        self._off = (1 - duty) * period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self._off > 0:
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                time.sleep(self._on)
                os.kill(self._pid, signal.SIGSTOP)
                time.sleep(self._off)
                os.kill(self._pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        finally:
            try:
                os.kill(self._pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
