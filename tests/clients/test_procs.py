"""Servers started by the tests and `make run` die with their parent, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clients.procs import spawn, stop_process

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.2)
    return not alive(pid)


def parent_with_server(server: str) -> subprocess.Popen[str]:
    """A process that spawns ``server`` (a Python expression's argv) as the tests do, prints its
    pid, and then waits to be killed."""
    script = textwrap.dedent(f"""
        import sys, time
        from clients.procs import spawn, wait_healthy
        argv = {server}
        proc = spawn(argv, cwd={str(ROOT)!r})
        if "--port" in argv:
            wait_healthy("http://127.0.0.1:" + argv[argv.index("--port") + 1], proc, "server", 300)
        print(proc.pid, flush=True)
        time.sleep(600)
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_a_spawned_process_dies_when_its_parent_is_killed() -> None:
    parent = parent_with_server(f"[{sys.executable!r}, '-c', 'import time; time.sleep(600)']")
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    assert wait_gone(child, 10), "the child outlived its killed parent"


def test_a_server_spawned_from_a_thread_outlives_the_thread_not_the_process(tmp_path: Path) -> None:
    """The kernel's parent-death signal follows the forking thread: a verifier restarted from a
    worker thread (tests/e2e/test_cloud_loss.py) was stopped as soon as that thread ended. The
    server's own watcher (verifier.core.lifetime) follows the process instead."""
    from clients.procs import free_port

    port = free_port()
    script = textwrap.dedent(f"""
        import sys, threading, time
        from clients.procs import spawn, wait_healthy
        pid = []
        def start():
            argv = [sys.executable, "-m", "verifier.cli", "--backend", "torch", "--threads", "1", "--port", "{port}"]
            proc = spawn(argv, cwd={str(ROOT)!r})
            wait_healthy("http://127.0.0.1:{port}", proc, "verifier", 300)
            pid.append(proc.pid)
        t = threading.Thread(target=start)
        t.start()
        t.join()
        print(pid[0], flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    with parent.stdout:
        line = parent.stdout.readline()
    assert line.strip().isdigit(), "the verifier did not start"
    verifier = int(line)
    time.sleep(3)  # the thread that started it is gone
    try:
        assert alive(verifier), "the verifier stopped when the thread that started it ended"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_gone(verifier, 30), "the verifier outlived the killed process that started it"


def test_stopping_a_server_ends_its_own_children_too() -> None:
    """A server's children (vLLM's engine process) are in its process group and go with it,
    even when the server ignores SIGTERM."""
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
              "print(c.pid, flush=True); time.sleep(600)")
    proc = spawn([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    stop_process(proc, grace_s=1)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert wait_gone(grandchild, 10)


@pytest.mark.integration
def test_a_verifier_started_by_a_killed_test_process_does_not_outlive_it(tmp_path: Path) -> None:
    """The leak the issue saw: a crashed test run left its verifiers running (1.6 GB each)."""
    from clients.procs import free_port

    port = free_port()
    parent = parent_with_server(f"[{sys.executable!r}, '-m', 'verifier.cli', '--backend', 'torch', '--threads', '1', "
                                f"'--port', '{port}']")
    assert parent.stdout is not None
    with parent.stdout:
        line = parent.stdout.readline()
    assert line.strip().isdigit(), "the verifier did not start"
    verifier = int(line)
    assert alive(verifier)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert wait_gone(verifier, 30), "the verifier outlived the killed test process"
