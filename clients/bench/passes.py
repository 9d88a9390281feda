"""Time one verifier pass: many rounds batched into one varlen pass vs one transformers forward each.

  .venv/bin/python -m clients.bench.passes --rounds 8 --drafted 4 --context 200 --threads 1 --runs 3

Each round is the pending token plus ``drafted`` draft tokens over a cached context; a run takes
the median of ``--repeat`` passes for both ways (in alternating order over the runs); prints
each way's median [min-max] over the runs and their ratio, taken run by run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from clients.bench.raw import write_raw
from clients.bench.spread import balanced, spread
from verifier.backends.base import ScoreBatch, SequenceState
from verifier.backends.torch_backend import TorchBackend
from verifier.core.cpu import read_cpu
from verifier.core.models import default_target_dir


def median_pass_s(backend: TorchBackend, rounds: int, drafted: int, context: int, repeat: int) -> float:
    rng = np.random.default_rng(0)
    vocab = backend.info.vocab_size
    states: list[SequenceState] = [backend.new_state() for _ in range(rounds)]
    for s in states:
        backend.score(ScoreBatch.of([(s, rng.integers(0, vocab, size=context).tolist(), 0)]))
    times = []
    for _ in range(repeat):
        items = [(s, rng.integers(0, vocab, size=drafted + 1).tolist(), drafted + 1) for s in states]
        t0 = time.perf_counter()
        if backend.varlen:
            backend.score(ScoreBatch.of(items))
        else:
            for item in items:
                backend.score(ScoreBatch.of([item]))
        times.append(time.perf_counter() - t0)
        for s in states:
            backend.truncate(s, context)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--drafted", type=int, default=4)
    p.add_argument("--context", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=7, help="passes per way and run (their median is the run's)")
    p.add_argument("--runs", type=int, default=3, help="runs, the two ways in alternating order")
    p.add_argument("--out", type=Path, default=None, help="write the raw runs here as JSON")
    args = p.parse_args(argv)
    load_start = os.getloadavg()
    backends = {"varlen": TorchBackend(default_target_dir(), threads=args.threads, varlen=True),
                "per-item": TorchBackend(default_target_dir(), threads=args.threads, varlen=False)}
    runs: list[dict[str, float | int | str]] = []
    for run in range(args.runs):
        for way in balanced(list(backends), run):
            pass_ms = median_pass_s(backends[way], args.rounds, args.drafted, args.context, args.repeat) * 1000
            runs.append({"run": run, "way": way, "median_pass_ms": round(pass_ms, 2)})
    ms = {way: [float(r["median_pass_ms"]) for r in runs if r["way"] == way] for way in backends}
    ratio = spread([b / a for a, b in zip(ms["varlen"], ms["per-item"])])
    command = (f".venv/bin/python -m clients.bench.passes --rounds {args.rounds} --drafted {args.drafted} "
               f"--context {args.context} --threads {args.threads} --repeat {args.repeat} --runs {args.runs}")
    print(f"{args.rounds} rounds x {args.drafted + 1} tokens at context {args.context}, {args.threads} thread(s), "
          f"median [min-max] over {args.runs} runs: one varlen pass {spread(ms['varlen']).cell(1)} ms, one "
          f"transformers forward each {spread(ms['per-item']).cell(1)} ms ({ratio.cell(2)}x)\n"
          f"cpu: {read_cpu().describe()}\nreproduce: {command}")
    write_raw(args.out, command, load_start, runs=runs)


if __name__ == "__main__":
    main()
