"""A server that must not outlive the process that started it (a test run, ``make run``).

``clients.procs.spawn`` puts the parent's pid in ``TANDEM_PARENT_PID``; a server calls
``exit_with_parent()`` first thing. A watcher thread then sees the parent go (the server is
handed to another parent: ``os.getppid()`` changes), however it went (a crash, SIGKILL, a test
runner's time-out), and stops the server: SIGTERM to itself, so that it shuts down its own
children (vLLM's engine process) as usual, and SIGKILL to its process group if it is still
there after ``grace_s``. The kernel's parent-death signal alone is not enough: it follows the
thread that started the child, so a server started from a worker thread would be stopped when
that thread ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

PARENT_ENV = "TANDEM_PARENT_PID"


def exit_with_parent(poll_s: float = 0.5, grace_s: float = 20.0) -> threading.Thread | None:
    """Watch the parent named by ``TANDEM_PARENT_PID`` (None: not set, nothing watched)."""
    raw = os.environ.get(PARENT_ENV, "")
    if not raw.isdigit():
        return None
    parent = int(raw)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgrp() == os.getpid():  # a group of its own (spawn): its children go too
                os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    watcher.start()
    return watcher
