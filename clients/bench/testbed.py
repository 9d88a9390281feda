"""Real processes for a benchmark: one verifier, and per scenario a link relay (own thread
and event loop, so its timing is not disturbed by the client) and an edge behind it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from clients.bench.cpu import DutyCycle
from clients.bench.relay import Counters, LinkRelay, LinkSpec
from clients.bench.scenario import Scenario
from clients.procs import free_port, spawn, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, args: list[str], log: Path, cpus: tuple[int, ...] | None,
                 env: dict[str, str] | None = None) -> None:
        usable = os.sched_getaffinity(0)
        pin = {c for c in cpus if c in usable} if cpus else None

        def preexec() -> None:
            if pin:
                os.sched_setaffinity(0, pin)

        self.log = log
        with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
            self.proc = spawn([sys.executable, *args], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, preexec=preexec,
                              env={**os.environ, **env} if env else None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


def start_verifier(log: Path, cpus: tuple[int, ...] | None, flags: Sequence[str] = ()) -> tuple[Process, int]:
    """A verifier process on a free loopback port, healthy; pinned: one thread per core,
    unpinned: the verifier's own thread default (all cores but one)."""
    port = free_port()
    threads = ["--threads", str(len(cpus))] if cpus else []
    proc = Process(["-m", "verifier.cli", "--port", str(port), *threads, *flags], log, cpus)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc.proc, "verifier")
    except BaseException:
        proc.stop()
        raise
    return proc, port


class RelayThread:
    """A LinkRelay running in its own thread and event loop."""

    def __init__(self, spec: LinkSpec, upstream_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.relay = LinkRelay(spec, "127.0.0.1", upstream_port)
        asyncio.run_coroutine_threadsafe(self.relay.start(), self._loop).result(10)

    @property
    def port(self) -> int:
        return self.relay.port

    @property
    def counters(self) -> Counters:
        return self.relay.counters

    def restart_clock(self) -> None:
        """Time zero of the scenario (rate schedule, outages) is now."""
        asyncio.run_coroutine_threadsafe(self._restart(), self._loop).result(5)

    async def _restart(self) -> None:
        self.relay.restart_clock()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class Testbed:
    def __init__(self, log_dir: Path, verifier_cpus: tuple[int, ...] | None,
                 edge_cpus: tuple[int, ...] | None, gamma: int, edge_args: tuple[str, ...] = (),
                 verifier_backend: str = "torch") -> None:
        self.log_dir = log_dir
        self.edge_args = edge_args  # extra flags for every edge (e.g. --predictor)
        self.verifier_backend = verifier_backend
        self.verifier_cpus = verifier_cpus
        self.edge_cpus = edge_cpus
        self.gamma = gamma
        self.verifier: Process | None = None
        self.verifier_port = 0
        self._started: list[Process] = []  # everything started, stopped again by stop() whatever happens

    def track(self, process: Process) -> Process:
        """Make ``stop()`` end this process too, whatever else fails."""
        self._started.append(process)
        return process

    def start_verifier(self) -> None:
        self.verifier, self.verifier_port = start_verifier(self.log_dir / "verifier.log", self.verifier_cpus,
                                                           ["--backend", self.verifier_backend])
        self.track(self.verifier)

    def start_vllm_server(self) -> int:
        """vLLM's own OpenAI server for the target (the `vllm-serve` baseline), on the verifier's cores,
        float32 like the verifier; its port."""
        from verifier.core.models import default_target_dir

        port = free_port()
        threads = len(self.verifier_cpus) if self.verifier_cpus else None
        env = {"VLLM_CPU_KVCACHE_SPACE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        proc = self.track(Process(["-m", "vllm.entrypoints.openai.api_server", "--model", str(default_target_dir()),
                                   "--served-model-name", "SmolLM2-135M-Instruct", "--port", str(port),
                                   "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
                                   "--disable-log-stats"], self.log_dir / "vllm-serve.log", self.verifier_cpus,
                                  env=env))
        wait_healthy(f"http://127.0.0.1:{port}", proc.proc, "vllm serve", timeout=600)
        return port

    def start_edge(self, scenario: Scenario, relay: RelayThread, draft_model: str | None,
                   tag: str) -> tuple[Process, DutyCycle, str]:
        cpus = scenario.edge.cpus or self.edge_cpus
        threads = scenario.edge.threads or (len(cpus) if cpus else 2)
        port = free_port()
        args = ["-m", "proxy.cli", "--port", str(port), "--verifier-url", f"http://127.0.0.1:{relay.port}",
                "--threads", str(threads), "--slots", "1", "--gamma", str(self.gamma), "--verifier-timeout-s", "120"]
        if draft_model:
            args += ["--draft-model", draft_model]
        args += list(self.edge_args)
        edge = self.track(Process(args, self.log_dir / f"edge-{scenario.name}-{tag}.log", cpus))
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, edge.proc, "edge")
        duty = DutyCycle(edge.pid, scenario.edge.duty)
        duty.start()
        return edge, duty, url

    def stop(self) -> None:
        """Stop every process this testbed started (idempotent; one failure does not stop the rest)."""
        for proc in reversed(self._started):
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                proc.proc.kill()
