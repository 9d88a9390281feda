"""`python -m clients.faults`: the cloud-fault matrix, with real processes on loopback.

A verifier (torch) behind the link relay, an edge with ``--on-cloud-loss wait`` in front of it.
Each fault is injected 1.5 s into a request, for {greedy, seeded sample} x {stream, not}:

- ``kill``: the verifier is killed and a new one started on its port;
- ``sigstop``: the verifier is frozen for 4 s (the edge's round deadline is 2 s);
- ``outage``: the relay delivers nothing for 20 s (packets held, as a link that stalls);
- ``reset``: the relay cuts every connection and refuses new ones for 5 s.

Each answer is compared with the same request answered without a fault (text identical =
nothing lost, nothing twice: the sampled ones too, as randomness is keyed by position).
Printed: client-visible errors, identity, tokens, the longest gap between stream chunks, and
the time added by the fault.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from clients.bench.link import Outage
from clients.bench.relay import LinkSpec
from clients.bench.testbed import Process, RelayThread
from clients.procs import free_port, wait_healthy

MODEL = "SmolLM2-135M-Instruct"
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
FAULT_AT_S = 1.5


@dataclass
class Outcome:
    status: int
    text: str
    tokens: int
    seconds: float
    max_gap_s: float
    error: str | None


class Rig:
    def __init__(self, logs: Path, max_tokens: int) -> None:
        self.logs = logs
        self.max_tokens = max_tokens
        self.port = free_port()
        self.verifier = self._start_verifier(1)
        self.relay = RelayThread(LinkSpec(), self.port)
        edge_port = free_port()
        self.edge = Process(["-m", "proxy.cli", "--port", str(edge_port), "--verifier-url",
                             f"http://127.0.0.1:{self.relay.port}", "--threads", "1", "--slots", "1",
                             "--on-cloud-loss", "wait", "--cloud-wait-s", "60", "--round-timeout-s", "2"],
                            logs / "edge.log", None)
        self.edge_url = f"http://127.0.0.1:{edge_port}"
        wait_healthy(self.edge_url, self.edge.proc, "edge")
        self.restarts = 1

    def _start_verifier(self, n: int) -> Process:
        proc = Process(["-m", "verifier.cli", "--port", str(self.port), "--threads", "1"],
                       self.logs / f"verifier-{n}.log", None)
        wait_healthy(f"http://127.0.0.1:{self.port}", proc.proc, "verifier")
        return proc

    def stop(self) -> None:
        self.edge.stop()
        self.relay.stop()
        self.verifier.stop()

    # ---- faults ----
    def kill(self) -> None:
        self.verifier.proc.kill()
        self.verifier.proc.wait()
        self.restarts += 1
        self.verifier = self._start_verifier(self.restarts)

    def sigstop(self) -> None:
        os.kill(self.verifier.pid, signal.SIGSTOP)
        time.sleep(4)
        os.kill(self.verifier.pid, signal.SIGCONT)

    def outage(self) -> None:
        self._link_down(20.0, "stall")

    def reset(self) -> None:
        self._link_down(5.0, "reset")

    def _link_down(self, seconds: float, mode: str) -> None:
        self.relay.relay.spec = LinkSpec(outages=(Outage(0.0, seconds),), outage_mode=mode)
        self.relay.restart_clock()
        time.sleep(seconds + 0.5)
        self.relay.relay.spec = LinkSpec()
        self.relay.restart_clock()

    # ---- requests ----
    def ask(self, sampled: bool, stream: bool, fault: Callable[[], None] | None) -> Outcome:
        body: dict[str, object] = {"model": MODEL, "messages": PROMPT, "max_tokens": self.max_tokens,
                                   "temperature": 0.8 if sampled else 0.0, "stream": stream}
        if sampled:
            body["seed"] = 11
        if stream:
            body["stream_options"] = {"include_usage": True}
        injector = threading.Timer(FAULT_AT_S, fault) if fault else None
        t0 = time.perf_counter()
        if injector:
            injector.start()
        try:
            return self._stream(body, t0) if stream else self._full(body, t0)
        finally:
            if injector:
                injector.join()

    def _full(self, body: dict[str, object], t0: float) -> Outcome:
        r = httpx.post(f"{self.edge_url}/v1/chat/completions", json=body, timeout=300)
        took = time.perf_counter() - t0
        if r.status_code != 200:
            return Outcome(r.status_code, "", 0, took, took, r.text[:200])
        obj = r.json()
        return Outcome(200, obj["choices"][0]["message"]["content"], obj["usage"]["completion_tokens"], took, took,
                       None)

    def _stream(self, body: dict[str, object], t0: float) -> Outcome:
        parts: list[str] = []
        tokens, gap, last, error = 0, 0.0, t0, None
        with httpx.stream("POST", f"{self.edge_url}/v1/chat/completions", json=body, timeout=300) as r:
            if r.status_code != 200:
                return Outcome(r.status_code, "", 0, time.perf_counter() - t0, 0.0, r.read().decode()[:200])
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter()
                gap, last = max(gap, now - last), now
                obj = json.loads(line[6:])
                if "error" in obj:
                    error = obj["error"]["message"]
                    continue
                if obj.get("usage"):
                    tokens = obj["usage"]["completion_tokens"]
                for choice in obj["choices"]:
                    parts.append(choice["delta"].get("content") or "")
        return Outcome(200, "".join(parts), tokens, time.perf_counter() - t0, gap, error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default="kill,sigstop,outage,reset")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="tandem-faults-"))
    rig = Rig(logs, args.max_tokens)
    rows = []
    try:
        references = {sampled: rig.ask(sampled, False, None) for sampled in (False, True)}
        for name in args.faults.split(","):
            fault = getattr(rig, name)
            for sampled in (False, True):
                for stream in (True, False):
                    ref = references[sampled]
                    got = rig.ask(sampled, stream, fault)
                    same = got.text == ref.text
                    rows.append((name, "sampled" if sampled else "greedy", "stream" if stream else "full",
                                 got.error or ("" if got.status == 200 else f"HTTP {got.status}"), same,
                                 f"{got.tokens}/{ref.tokens}", f"{got.max_gap_s:.1f}" if stream else "-",
                                 f"{got.seconds - ref.seconds:+.1f}"))
                    print(" | ".join(str(c) for c in rows[-1]), flush=True)
    finally:
        rig.stop()
    print("\n| fault | sampling | request | client error | identical to no-fault | tokens | longest gap (s) | "
          "added time (s) |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) if c != "" else "none" for c in row) + " |")
    print(f"\nlogs: {logs}\nreproduce: .venv/bin/python -m clients.faults --faults {args.faults} "
          f"--max-tokens {args.max_tokens}")


if __name__ == "__main__":
    main()
