"""Starting local servers: a free loopback port, a process that cannot outlive its parent, and
waiting until /health answers 200."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import httpx

from verifier.core.lifetime import PARENT_ENV

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a child between fork and exec: the kernel sends it SIGTERM when its parent dies, however
    the parent ends (a crash, SIGKILL, a test runner killed by its time-out). SIGTERM, not SIGKILL,
    so that the server shuts down its own children (vLLM's engine process) as it goes. The kernel
    ties this to the forking thread, so ``spawn`` asks for it from the main thread only."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
          stdout: IO[bytes] | int | None = None, stderr: IO[bytes] | int | None = None,
          preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start a server that dies with this process and leads a process group of its own, which
    ``stop_process`` ends whole. Tandem's servers watch the pid in ``TANDEM_PARENT_PID``
    (``verifier.core.lifetime``); from the main thread the kernel's parent-death signal covers any
    command at once (``die_with_parent``). ``preexec`` runs in the child as well."""
    from_main = threading.current_thread() is threading.main_thread()

    def child_setup() -> None:
        if from_main:
            die_with_parent()
        if preexec is not None:
            preexec()

    child_env = {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
    return subprocess.Popen(list(argv), cwd=cwd, env=child_env, stdout=stdout, stderr=stderr,
                            preexec_fn=child_setup, start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], name: str, timeout: float = 300.0,
                 verify: ssl.SSLContext | bool = True) -> None:
    """Poll url/health until 200; raise if the process exits or the timeout passes. ``verify``:
    the TLS context trusting an https:// url's certificate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become healthy within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` (SIGTERM), then SIGKILL after grace_s; a process started by ``spawn`` leads its own
    group, and whatever of the group is left (a server's own children) is killed with it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    kill_group(proc.pid)


def kill_group(pgid: int) -> None:
    """SIGKILL to what is left of the process group ``pgid`` (nothing when there is none, or when
    ``pgid`` is not a group of its own: the caller's group is never signalled)."""
    if pgid != os.getpgrp():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
