"""`make run`'s launcher keeps both servers up: a crashed verifier is restarted, and it says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from clients.procs import free_port, spawn, wait_healthy
from tests.conftest import ROOT


def child_pid(parent: int, needle: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and needle in cmdline:
            return int(entry.name)
    raise LookupError(needle)


def test_a_killed_verifier_is_restarted_and_the_edge_answers_again(tmp_path: Path) -> None:
    vport, eport = free_port(), free_port()
    log = (tmp_path / "run.log").open("wb")
    proc = spawn([sys.executable, "-m", "clients.run_local", "--verifier-port", str(vport), "--edge-port", str(eport),
                  "--backend", "torch"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    edge = f"http://127.0.0.1:{eport}"
    try:
        wait_healthy(edge, proc, "run_local", 240)
        os.kill(child_pid(proc.pid, "verifier.cli"), signal.SIGKILL)
        deadline = time.monotonic() + 180
        text = ""
        while "verifier is back" not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = (tmp_path / "run.log").read_text()
        assert "verifier exited with code -9; restarting it" in text and "verifier is back" in text
        assert proc.poll() is None  # the launcher and the edge kept running
        r = httpx.post(f"{edge}/v1/chat/completions", timeout=120, json={
            "model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "temperature": 0, "tandem": {"mode": "speculative"}})
        assert r.status_code == 200 and "degraded" not in r.json()["tandem"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
