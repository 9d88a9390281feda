"""`make run`: start the verifier and the edge on loopback, print how to call them,
stop both cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from clients.procs import wait_healthy
from proxy.settings import EdgeSettings
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verifier-port", type=int, default=8100)
    parser.add_argument("--edge-port", type=int, default=8000)
    parser.add_argument("--backend", choices=["vllm", "torch"], default="vllm",
                        help="the verifier's target backend (vllm: greedy requests speculate, sampled ones stream "
                        "vLLM's own sampling; torch: sampled requests speculate too)")
    args = parser.parse_args()
    ver_url = f"http://127.0.0.1:{args.verifier_port}"
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, systemd, docker stop) stops both servers like Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "verifier.cli", "--port", str(args.verifier_port),
                                       "--backend", args.backend]))
        wait_healthy(ver_url, procs[0], "verifier", 300)
        procs.append(subprocess.Popen([sys.executable, "-m", "proxy.cli", "--port", str(args.edge_port),
                                       "--verifier-url", ver_url]))
        wait_healthy(f"http://127.0.0.1:{args.edge_port}", procs[1], "edge", 120)
        draft = resolve_draft(EdgeSettings().draft_model)  # what the edge reads from its environment
        print(SNIPPET.format(edge=args.edge_port, ver=args.verifier_port, draft=draft, backend=args.backend),
              flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a server exited; stopping", file=sys.stderr)
    except RuntimeError as exc:
        print(f"failed to start: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop()
    os._exit(0)


if __name__ == "__main__":
    main()
