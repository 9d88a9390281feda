"""`python -m clients.faults`: the cloud-fault matrix, with real processes on loopback.

A verifier (torch) behind the link relay, an edge with ``--on-cloud-loss wait`` in front of it.
Each fault is injected 1.5 s into a request, for {greedy, seeded sample} x {stream, not}:

- ``kill``: the verifier is killed and a new one started on its port;
- ``sigstop``: the verifier is frozen for 4 s (the edge's round deadline is 2 s);
- ``outage``: the relay delivers nothing for 20 s (packets held, as a link that stalls);
- ``reset``: the relay cuts every connection and refuses new ones for 5 s.

Each answer is compared with the same request answered without a fault: the same output token
ids (``return_token_ids``) and the same text = nothing lost, nothing twice (the sampled ones too,
as randomness is keyed by position). Printed: client-visible errors, identity, tokens, the longest
gap between stream chunks, and the time added by the fault. With ``--repeats`` the whole matrix
runs again (the faults in a carry-over balanced order, a fresh no-fault answer per repeat) and the
times are median [min-max]; ``--out`` writes every answer's record. Every answer must be
identical: any that is not (a client error included) is named on stderr and the command exits
with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from clients.bench.identity import token_difference
from clients.bench.link import Outage
from clients.bench.raw import write_raw
from clients.bench.relay import LinkSpec
from clients.bench.spread import balanced, spread
from clients.bench.testbed import Process, RelayThread
from clients.procs import free_port, wait_healthy
from verifier.core.cpu import read_cpu

MODEL = "SmolLM2-135M-Instruct"
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
FAULT_AT_S = 1.5
FAULTS = ("kill", "sigstop", "outage", "reset")


@dataclass
class Outcome:
    status: int
    text: str
    tokens: int
    seconds: float
    max_gap_s: float
    error: str | None
    token_ids: list[int] | None = None  # the output token ids (``return_token_ids``); None: none came


def difference(reference: Outcome, got: Outcome) -> str | None:
    """Why ``got`` is not the no-fault answer, in words; None when it is identical."""
    if reference.status != 200 or reference.error is not None or reference.token_ids is None:
        return f"the no-fault answer itself failed: {failure(reference) or 'no token ids'}"
    if (why := failure(got)) is not None:
        return why
    if got.token_ids is None:
        return "no token ids in the answer (return_token_ids)"
    if (why := token_difference(reference.token_ids, got.token_ids)) is not None:
        return why
    if got.text != reference.text:
        return "the same token ids, a different text"
    return None


def failure(o: Outcome) -> str | None:
    """The client-visible error of an answer, if any."""
    if o.status != 200:
        return f"HTTP {o.status}: {o.error}"
    return f"error: {o.error}" if o.error is not None else None


class Requests:
    """The matrix's chat completion to the edge, whole or streamed, with its output token ids."""

    def __init__(self, http: httpx.Client, max_tokens: int) -> None:
        self.http = http
        self.max_tokens = max_tokens

    def body(self, sampled: bool, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": MODEL, "messages": PROMPT, "max_tokens": self.max_tokens,
                                "temperature": 0.8 if sampled else 0.0, "stream": stream, "return_token_ids": True}
        if sampled:
            body["seed"] = 11
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def full(self, body: dict[str, Any], t0: float) -> Outcome:
        r = self.http.post("/v1/chat/completions", json=body)
        took = time.perf_counter() - t0
        if r.status_code != 200:
            return Outcome(r.status_code, "", 0, took, took, r.text[:200])
        obj = r.json()
        choice = obj["choices"][0]
        return Outcome(200, choice["message"]["content"], obj["usage"]["completion_tokens"], took, took, None,
                       choice.get("token_ids"))

    def stream(self, body: dict[str, Any], t0: float) -> Outcome:
        parts: list[str] = []
        token_ids: list[int] | None = None
        tokens, gap, last, error = 0, 0.0, t0, None
        with self.http.stream("POST", "/v1/chat/completions", json=body) as r:
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
                    if choice.get("token_ids") is not None:
                        token_ids = [*(token_ids or []), *choice["token_ids"]]
        return Outcome(200, "".join(parts), tokens, time.perf_counter() - t0, gap, error, token_ids)


class FaultRig(Protocol):
    def fault(self, name: str) -> Callable[[], None]: ...

    def ask(self, sampled: bool, stream: bool, fault: Callable[[], None] | None) -> Outcome: ...

    def stop(self) -> None: ...


class Rig:
    def __init__(self, logs: Path, max_tokens: int) -> None:
        self.logs = logs
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
        self.requests = Requests(httpx.Client(base_url=self.edge_url, timeout=300), max_tokens)
        self.restarts = 1

    def _start_verifier(self, n: int) -> Process:
        proc = Process(["-m", "verifier.cli", "--port", str(self.port), "--backend", "torch",
                        "--threads", "1"],
                       self.logs / f"verifier-{n}.log", None)
        wait_healthy(f"http://127.0.0.1:{self.port}", proc.proc, "verifier")
        return proc

    def stop(self) -> None:
        self.requests.http.close()
        self.edge.stop()
        self.relay.stop()
        self.verifier.stop()

    # ---- faults ----
    def fault(self, name: str) -> Callable[[], None]:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}: one of {', '.join(FAULTS)}")
        fault: Callable[[], None] = getattr(self, name)
        return fault

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
        body = self.requests.body(sampled, stream)
        injector = threading.Timer(FAULT_AT_S, fault) if fault else None
        t0 = time.perf_counter()
        if injector:
            injector.start()
        try:
            return self.requests.stream(body, t0) if stream else self.requests.full(body, t0)
        finally:
            if injector:
                injector.join()


@dataclass(frozen=True)
class Case:
    """One request of the matrix: a fault, greedy or sampled, streamed or whole."""

    fault: str
    sampled: bool
    stream: bool

    @property
    def words(self) -> tuple[str, str, str]:
        return self.fault, "sampled" if self.sampled else "greedy", "stream" if self.stream else "full"


@dataclass(frozen=True)
class Run:
    """A case's answer in one repeat, against the no-fault answer."""

    case: Case
    repeat: int
    got: Outcome
    reference: Outcome
    why: str | None  # None: identical to the no-fault answer

    def record(self) -> dict[str, Any]:
        fault, sampling, request = self.case.words
        return {"fault": fault, "sampling": sampling, "request": request, "repeat": self.repeat,
                "status": self.got.status, "error": self.got.error, "identical": self.why is None, "why": self.why,
                "tokens": self.got.tokens, "reference_tokens": self.reference.tokens,
                "seconds": round(self.got.seconds, 3), "reference_seconds": round(self.reference.seconds, 3),
                "max_gap_s": round(self.got.max_gap_s, 3) if self.case.stream else None,
                "token_ids": self.got.token_ids, "reference_token_ids": self.reference.token_ids}


def row(case: Case, runs: list[Run]) -> tuple[str, ...]:
    """A case's table row over its repeats: not identical when any repeat was not; times as
    median [min-max] over the repeats (the one value for a single repeat)."""
    worst = next((r for r in runs if r.why is not None), runs[0])
    error = worst.got.error or ("" if worst.got.status == 200 else f"HTTP {worst.got.status}")
    identical = "yes" if worst.why is None else ("NO" if len(runs) == 1 else
                                                 f"NO ({sum(r.why is not None for r in runs)} of {len(runs)})")
    gap = spread([r.got.max_gap_s for r in runs]).cell(1) if case.stream else "-"
    added = spread([r.got.seconds - r.reference.seconds for r in runs])
    added_cell = f"{added.median:+.1f}"
    if len(runs) > 1:
        added_cell += f" [{added.min:+.1f} to {added.max:+.1f}]"
    return (*case.words, error, identical, f"{worst.got.tokens}/{worst.reference.tokens}", gap, added_cell)


def matrix(rig: FaultRig, names: list[str], repeats: int) -> list[Run]:
    """Every case ``repeats`` times, the faults in a carry-over balanced order per repeat, each
    answer compared with a no-fault answer taken in the same repeat; printed as it comes."""
    runs: list[Run] = []
    for repeat in range(repeats):
        references = {sampled: rig.ask(sampled, False, None) for sampled in (False, True)}
        for name in balanced(names, repeat):
            fault = rig.fault(name)
            for sampled in (False, True):
                for stream in (True, False):
                    case = Case(name, sampled, stream)
                    got = rig.ask(sampled, stream, fault)
                    runs.append(Run(case, repeat, got, references[sampled], difference(references[sampled], got)))
                    print(f"repeat {repeat}: " + " | ".join(row(case, [runs[-1]])), flush=True)
    return runs


def main(argv: list[str] | None = None, start_rig: Callable[[Path, int], FaultRig] = Rig) -> int:
    """Run the matrix; 1 when any answer is not identical to the no-fault one (each named on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=1, help="times the whole matrix runs")
    parser.add_argument("--out", type=Path, default=None, help="write every answer's record here as JSON")
    args = parser.parse_args(argv)
    names = [n for n in args.faults.split(",") if n]
    if unknown := [n for n in names if n not in FAULTS]:
        parser.error(f"unknown fault(s) {', '.join(unknown)}: choose from {', '.join(FAULTS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    logs = Path(tempfile.mkdtemp(prefix="tandem-faults-"))
    load_start = os.getloadavg()
    rig = start_rig(logs, args.max_tokens)
    try:
        runs = matrix(rig, names, args.repeats)
    finally:
        rig.stop()
    command = (f".venv/bin/python -m clients.faults --faults {args.faults} --max-tokens {args.max_tokens} "
               f"--repeats {args.repeats}")
    print("\n| fault | sampling | request | client error | identical to no-fault | tokens | longest gap (s) | "
          "added time (s) |\n|---|---|---|---|---|---|---|---|")
    for case in dict.fromkeys(Case(n, sampled, stream) for n in names for sampled in (False, True)
                              for stream in (True, False)):
        cells = row(case, [r for r in runs if r.case == case])
        print("| " + " | ".join(c if c != "" else "none" for c in cells) + " |")
    print(f"\ncpu: {read_cpu().describe()}\nlogs: {logs}\nreproduce: {command}")
    write_raw(args.out, command, load_start, runs=[r.record() for r in runs])
    failures = [f"{' '.join(r.case.words)}{f' (repeat {r.repeat})' if args.repeats > 1 else ''}: {r.why}"
                for r in runs if r.why is not None]
    for line in failures:
        print(f"LOSSLESS CHECK FAILED: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
