"""`python -m clients.soak`: many concurrent streams through the edge for a long time.

Starts a verifier (torch) and an edge on loopback, then keeps ``--streams`` chat streams
going for ``--minutes`` (each a short answer, then the next), and reports: requests, errors,
streams that did not end in ``[DONE]``, the resident memory (RSS) of both processes at the
start and the end, and the sessions left on the verifier afterwards (must be 0).

    .venv/bin/python -m clients.soak --streams 64 --minutes 10
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from clients.bench.testbed import Process, start_verifier
from clients.procs import free_port, stop_process, wait_healthy

MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["the sea", "a robot", "winter", "a library", "bread", "mountains", "a violin", "the moon"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stream_once(url: str, i: int, n: int, counts: Counter[str], lock: threading.Lock) -> None:
    body = {"model": MODEL, "stream": True, "max_tokens": 24, "temperature": 0.7 if n % 2 else 0.0, "seed": n,
            "messages": [{"role": "user", "content": f"Say something about {TOPICS[(i + n) % len(TOPICS)]}."}]}
    outcome = "ok"
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as r:
            if r.status_code != 200:
                outcome = f"http_{r.status_code}"
            else:
                lines = [line for line in r.iter_lines() if line.startswith("data: ")]
                if not lines or lines[-1] != "data: [DONE]":
                    outcome = "no_done"
                elif any('"error"' in line for line in lines):
                    outcome = "stream_error"
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    with lock:
        counts[outcome] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="tandem-soak-"))
    verifier, vport = start_verifier(logs / "verifier.log", None, ["--backend", "torch", "--threads", "1"])
    eport = free_port()
    edge = Process(["-m", "proxy.cli", "--port", str(eport), "--verifier-url", f"http://127.0.0.1:{vport}",
                    "--threads", "1", "--max-waiting", str(args.streams)], logs / "edge.log", None)
    url = f"http://127.0.0.1:{eport}"
    wait_healthy(url, edge.proc, "edge")
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.minutes * 60
    rss: dict[str, list[float]] = {"verifier": [], "edge": []}

    def worker(i: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            stream_once(url, i, n, counts, lock)
            n += 1

    try:
        warm = threading.Thread(target=stream_once, args=(url, 0, 0, Counter(), lock))
        warm.start()
        warm.join()
        rss["verifier"].append(rss_mib(verifier.pid))
        rss["edge"].append(rss_mib(edge.pid))
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.streams)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(30)
            rss["verifier"].append(rss_mib(verifier.pid))
            rss["edge"].append(rss_mib(edge.pid))
            print(f"{time.strftime('%H:%M:%S')} {dict(counts)} rss verifier {rss['verifier'][-1]:.0f} MiB, "
                  f"edge {rss['edge'][-1]:.0f} MiB", flush=True)
        time.sleep(2)
        sessions = httpx.get(f"http://127.0.0.1:{vport}/v1/stats", timeout=10).json()["sessions"]
    finally:
        stop_process(edge.proc)
        stop_process(verifier.proc)
    errors = sum(v for k, v in counts.items() if k != "ok")
    print(f"\n{args.streams} streams for {args.minutes:g} min: {sum(counts.values())} requests, {errors} errors "
          f"{dict(counts)}")
    for name, values in rss.items():
        print(f"RSS {name}: start {values[0]:.0f} MiB, end {values[-1]:.0f} MiB, max {max(values):.0f} MiB")
    print(f"verifier sessions afterwards: {sessions}")
    print(f"logs: {logs}\nreproduce: .venv/bin/python -m clients.soak --streams {args.streams} "
          f"--minutes {args.minutes:g}")
    return 1 if errors or sessions else 0


if __name__ == "__main__":
    raise SystemExit(main())
