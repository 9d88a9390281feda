"""The measurements behind three verifier defaults, with repeats, the settings compared side by
side in rotated order:

  .venv/bin/python -m clients.bench.defaults --repeats 3 --out docs/bench-defaults/results.json

- ``--cpu-linear``: one torch-backend pass of 1 row (a decode step) and of 5 rows (a round of 4
  drafts) over a cached context, Linear layers through torch's default kernels or oneDNN, with 1
  and 2 threads (both backends in this process; the median of ``--passes`` passes per repeat);
- ``--threads``: a verifier process (torch backend, unpinned) decoding ``--tokens`` tokens
  cloud-only over HTTP, with 1 compute thread and with 2; the time per token after the first,
  as its client sees it (the server's event loop needs a core of its own);
- ``--calibration-passes``: the time from starting a verifier process until it is healthy,
  with 0 and with 12 calibration passes, for the torch and the vLLM backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clients.bench.spread import rotated, spread
from clients.bench.testbed import start_verifier
from proxy.cloud.client import VerifierClient
from verifier.core.cpu import read_cpu
from verifier.core.protocol import Generation

CONTEXT = 200  # tokens already cached when a pass is timed


def linear_passes(repeats: int, passes: int) -> dict[str, Any]:
    """Per (kernels, threads, rows): each repeat's median pass time in ms."""
    import torch

    from verifier.backends.base import ScoreBatch
    from verifier.backends.torch_backend import TorchBackend
    from verifier.core.models import default_target_dir

    backends = {kind: TorchBackend(default_target_dir(), cpu_linear=kind, varlen=True, threads=1)
                for kind in ("torch", "onednn")}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {}
    for repeat in range(repeats):
        for threads in rotated([1, 2], repeat):
            torch.set_num_threads(threads)
            for kind in rotated(["torch", "onednn"], repeat):
                backend = backends[kind]
                for rows in (1, 5):
                    state = backend.new_state()
                    vocab = backend.info.vocab_size
                    backend.score(ScoreBatch.of([(state, rng.integers(0, vocab, size=CONTEXT).tolist(), 0)]))
                    one: list[float] = []
                    for _ in range(passes):
                        t0 = time.perf_counter()
                        backend.score(ScoreBatch.of([(state, rng.integers(0, vocab, size=rows).tolist(), rows)]))
                        one.append((time.perf_counter() - t0) * 1000)
                        backend.truncate(state, CONTEXT)
                    backend.release(state)
                    times.setdefault(f"{kind} threads={threads} rows={rows}", []).append(statistics.median(one))
    report = {key: spread(xs).as_dict(2) for key, xs in times.items()}
    for key, s in report.items():
        print(f"cpu-linear {key}: {s['median']} ms [{s['min']}-{s['max']}]", flush=True)
    return {"ms": report, "raw_ms": times}


async def decode_ms_per_token(url: str, prompt: list[int], tokens: int) -> float:
    """Cloud-only decoding of ``tokens`` greedy tokens; ms per token after the first."""
    client = VerifierClient(url, timeout_s=600)
    try:
        stamps: list[float] = []
        async for chunk in client.generate(Generation(prompt_token_ids=prompt), tokens, []):
            stamps += [time.perf_counter()] * len(chunk.token_ids)
    finally:
        await client.aclose()
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000


def server_threads(repeats: int, tokens: int, logs: Path) -> dict[str, Any]:
    prompt = np.random.default_rng(1).integers(100, 40000, size=CONTEXT).tolist()
    times: dict[str, list[float]] = {}
    for repeat in range(repeats):
        for threads in rotated([1, 2], repeat):
            proc, port = start_verifier(logs / f"threads-{threads}-{repeat}.log", None,
                                        ["--backend", "torch", "--threads", str(threads)])
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(decode_ms_per_token(url, prompt, 8))  # warm-up, not counted
                times.setdefault(f"threads={threads}", []).append(asyncio.run(decode_ms_per_token(url, prompt, tokens)))
            finally:
                proc.stop()
    report = {key: spread(xs).as_dict(2) for key, xs in times.items()}
    for key, s in report.items():
        print(f"verifier {key}: {s['median']} ms per token [{s['min']}-{s['max']}]", flush=True)
    return {"ms_per_token": report, "raw_ms": times}


def start_up(repeats: int, logs: Path) -> dict[str, Any]:
    times: dict[str, list[float]] = {}
    configs = [(backend, passes) for backend in ("torch", "vllm") for passes in (0, 12)]
    for repeat in range(repeats):
        for backend, passes in rotated(configs, repeat):
            t0 = time.perf_counter()
            proc, _ = start_verifier(logs / f"start-{backend}-{passes}-{repeat}.log", None,
                                     ["--backend", backend, "--calibration-passes", str(passes)])
            times.setdefault(f"{backend} calibration_passes={passes}", []).append(time.perf_counter() - t0)
            proc.stop()
    report = {key: spread(xs).as_dict(2) for key, xs in times.items()}
    for key, s in report.items():
        print(f"start-up {key}: {s['median']} s [{s['min']}-{s['max']}]", flush=True)
    return {"seconds_to_healthy": report, "raw_s": times}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", type=int, default=15, help="passes timed per setting and repeat (cpu-linear)")
    p.add_argument("--tokens", type=int, default=64, help="tokens decoded per setting and repeat (threads)")
    p.add_argument("--only", choices=["cpu-linear", "threads", "calibration"], nargs="*", default=None)
    p.add_argument("--out", type=Path, default=Path("docs/bench-defaults/results.json"))
    args = p.parse_args(argv)
    logs = args.out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "cpu-linear": lambda: linear_passes(args.repeats, args.passes),
        "threads": lambda: server_threads(args.repeats, args.tokens, logs),
        "calibration": lambda: start_up(args.repeats, logs),
    }
    load_start = os.getloadavg()
    results: dict[str, Any] = {name: run() for name, run in parts.items() if args.only is None or name in args.only}
    results.update({"command": " ".join(["python -m clients.bench.defaults", *sys.argv[1:]]),
                    "cpu": read_cpu().describe(), "cores": os.cpu_count(),
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]})
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
