"""`make run`: start the verifier and the edge on loopback, print how to call them, restart
either one if it crashes (the edge keeps answering meanwhile, by its --on-cloud-loss policy),
stop both cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from clients.procs import kill_group, spawn, wait_healthy
from proxy.settings import EdgeSettings
from verifier.core.lifetime import exit_with_parent
from verifier.core.models import resolve_draft

SNIPPET = """
Tandem is up.
  edge (OpenAI API): http://127.0.0.1:{edge}/v1      verifier: http://127.0.0.1:{ver}
  draft: {draft}    verifier backend: {backend}
  (TANDEM_EDGE_DRAFT_MODEL=target make run drafts with the target's own GGUF instead)

  curl -N http://127.0.0.1:{edge}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model": "SmolLM2-135M-Instruct", "stream": true,
         "messages": [{{"role": "user", "content": "Tell me about the moon."}}]}}'

  .venv/bin/python clients/openai_example.py --base-url http://127.0.0.1:{edge}/v1

Ctrl-C stops both.
"""

MAX_RESTARTS = 5  # in RESTART_WINDOW_S; more means it cannot run: stop
RESTART_WINDOW_S = 120.0


class Supervised:
    """One server process, restarted when it exits unasked."""

    def __init__(self, name: str, argv: list[str], url: str, start_timeout_s: float) -> None:
        self.name = name
        self.argv = argv
        self.url = url
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts: list[float] = []

    def start(self) -> None:
        self.proc = spawn(self.argv)
        wait_healthy(self.url, self.proc, self.name, self.start_timeout_s)

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def restart(self) -> None:
        """Start it again, or raise RuntimeError when it keeps failing."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            raise RuntimeError(f"{self.name} crashed {len(self.restarts)} times in {RESTART_WINDOW_S:.0f} s")
        print(f"{self.name} exited with code {self.exited()}; restarting it", file=sys.stderr, flush=True)
        self.start()
        print(f"{self.name} is back", file=sys.stderr, flush=True)


def main() -> None:
    exit_with_parent()  # started by a test: never outlive it (its servers then go with it)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verifier-port", type=int, default=8100)
    parser.add_argument("--edge-port", type=int, default=8000)
    parser.add_argument("--backend", choices=["vllm", "torch"], default="vllm",
                        help="the verifier's target backend (vllm: greedy requests speculate, sampled ones stream "
                        "vLLM's own sampling; torch: sampled requests speculate too)")
    args = parser.parse_args()
    ver_url = f"http://127.0.0.1:{args.verifier_port}"
    servers = [
        Supervised("verifier", [sys.executable, "-m", "verifier.cli", "--port", str(args.verifier_port),
                                "--backend", args.backend], ver_url, 300),
        Supervised("edge", [sys.executable, "-m", "proxy.cli", "--port", str(args.edge_port),
                            "--verifier-url", ver_url], f"http://127.0.0.1:{args.edge_port}", 120),
    ]

    def stop(*_: object) -> None:
        procs = [s.proc for s in servers if s.proc is not None]
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
            kill_group(p.pid)  # a server's own children (vLLM's engine) go with it

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, systemd, docker stop) stops both servers like Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    try:
        for server in servers:
            server.start()
        draft = resolve_draft(EdgeSettings().draft_model)  # what the edge reads from its environment
        print(SNIPPET.format(edge=args.edge_port, ver=args.verifier_port, draft=draft, backend=args.backend),
              flush=True)
        while True:
            for server in servers:
                if server.exited() is not None:
                    server.restart()
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"stopping: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop()
    os._exit(0)


if __name__ == "__main__":
    main()
