"""Time one verifier pass: many rounds batched into one varlen pass vs one transformers forward each.

  .venv/bin/python -m clients.bench.passes --rounds 8 --drafted 4 --context 200 --threads 1

Each round is the pending token plus ``drafted`` draft tokens over a cached context; prints the
median of ``--repeat`` passes for both ways and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from verifier.backends.base import ScoreBatch, SequenceState
from verifier.backends.torch_backend import TorchBackend
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
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    batched = TorchBackend(default_target_dir(), threads=args.threads, varlen=True)
    one_by_one = TorchBackend(default_target_dir(), threads=args.threads, varlen=False)
    a = median_pass_s(batched, args.rounds, args.drafted, args.context, args.repeat)
    b = median_pass_s(one_by_one, args.rounds, args.drafted, args.context, args.repeat)
    print(f"{args.rounds} rounds x {args.drafted + 1} tokens at context {args.context}, {args.threads} thread(s): "
          f"one varlen pass {a * 1000:.1f} ms, one transformers forward each {b * 1000:.1f} ms ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
