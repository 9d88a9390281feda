"""Session-scoped real servers: the verifier (torch, SmolLM2) and edges (llama.cpp draft)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients.procs import free_port, spawn, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "SmolLM2-135M-Instruct"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start_server(module: str, args: list[str], log: Path, timeout: float = 180.0, port: int | None = None,
                 ca_bundle: str | None = None, env: dict[str, str] | None = None) -> Server:
    """``ca_bundle``: the server runs HTTPS with a certificate this bundle trusts; ``env``: more
    environment variables."""
    port = port or free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        proc = spawn([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args],
                     cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"{'https' if ca_bundle else 'http'}://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, module, timeout, verify=ssl.create_default_context(cafile=ca_bundle) if ca_bundle
                     else True)
    except RuntimeError as exc:
        stop_process(proc, grace_s=0, sig=signal.SIGKILL)
        raise RuntimeError(f"{exc}:\n{log.read_text()[-3000:]}") from exc
    return Server(url, proc, log)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def verifier(logs_dir: Path) -> Iterator[Server]:
    server = start_server("verifier.cli", ["--backend", "torch", "--threads", "1", "--session-ttl-s", "30"],
                          logs_dir / "verifier.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def edge(verifier: Server, logs_dir: Path) -> Iterator[Server]:
    server = start_server("proxy.cli", ["--verifier-url", verifier.url, "--threads", "1", "--n-ctx", "2048"],
                          logs_dir / "edge.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def speculative_edge(verifier: Server, logs_dir: Path) -> Iterator[Server]:
    """An edge that always speculates (mode auto streams from the cloud when that is faster, as on loopback)."""
    server = start_server("proxy.cli", ["--verifier-url", verifier.url, "--threads", "1", "--n-ctx", "2048",
                                        "--mode", "speculative"], logs_dir / "speculative-edge.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orphan_edge(logs_dir: Path) -> Iterator[Server]:
    """An edge whose verifier does not exist, told to fail when the cloud is lost."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = start_server("proxy.cli", ["--verifier-url", dead, "--threads", "1", "--slots", "1",
                                        "--n-ctx", "512", "--on-cloud-loss", "fail"], logs_dir / "orphan-edge.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ngram_edge(verifier: Server, logs_dir: Path) -> Iterator[Server]:
    """An edge drafting with the model-free prompt-lookup drafter."""
    server = start_server("proxy.cli", ["--verifier-url", verifier.url, "--drafter", "ngram", "--slots", "1",
                                        "--n-ctx", "2048"], logs_dir / "ngram-edge.log")
    yield server
    server.stop()
