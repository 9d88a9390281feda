"""How much identical verifier passes vary: the floor under any pass-time estimator's error.

    .venv/bin/python -m clients.bench.pass_noise --backend vllm --repeat 30

For each shape (sessions x new tokens over a cached context), the backend scores the same
shape ``--repeat`` times (fresh random draft tokens each time, the states rolled back between
passes, greedy rows) and prints the median pass time and the median of |t - median| / median:
the relative error a predictor that knew each shape's true median time would still make. The
verifier's estimator (``verifier.scheduling.estimator``) cannot beat it. Then every pass of
every shape, in a shuffled order, is fed to a fresh estimator as the verifier feeds it (the
work the backend says each item costs, a prediction before each observation): its median
relative error after ``--repeat`` passes, against the floor, is the estimator model's own error.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np

from verifier.backends import BackendOptions, TargetBackend, load_backend
from verifier.backends.base import ScoreBatch
from verifier.core.models import default_target_dir
from verifier.scheduling.estimator import BatchShape, VerifyTimeEstimator

SHAPES = ((1, 5, 100), (4, 5, 100), (8, 5, 100), (8, 3, 400), (16, 5, 100))


def spread(times: Sequence[float]) -> float:
    """Median relative deviation from the median."""
    mid = statistics.median(times)
    return statistics.median(abs(t - mid) / mid for t in times)


def measure(backend: TargetBackend, sessions: int, new: int, context: int, repeat: int) -> list[float]:
    rng = np.random.default_rng(0)
    vocab = backend.info.vocab_size
    states = [backend.new_state() for _ in range(sessions)]
    try:
        backend.score(ScoreBatch.of([(s, rng.integers(100, vocab, context).tolist(), 0) for s in states]))
        times = []
        for _ in range(repeat + 1):
            items = [(s, rng.integers(100, vocab, new).tolist(), new) for s in states]
            batch = ScoreBatch.of(items, [False] * sessions)
            t0 = time.perf_counter()
            backend.score(batch)
            times.append(time.perf_counter() - t0)
            for s in states:
                backend.truncate(s, context)
        return times[1:]  # the first pass of a shape is a warm-up
    finally:
        for s in states:
            backend.release(s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["torch", "vllm"], default="vllm")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch backend's compute threads")
    args = parser.parse_args(argv)
    backend = load_backend(args.backend, str(default_target_dir()), BackendOptions(threads=args.threads))
    print("| sessions | new tokens | context | median pass ms | median relative deviation |")
    print("|---|---|---|---|---|")
    all_spreads = []
    passes: list[tuple[BatchShape, float]] = []
    try:
        for sessions, new, context in SHAPES:
            times = measure(backend, sessions, new, context, args.repeat)
            all_spreads.append(spread(times))
            shape = BatchShape.of([backend.work_of(context, new)] * sessions)
            passes += [(shape, t) for t in times]
            print(f"| {sessions} | {new} | {context} | {1000 * statistics.median(times):.1f} | {spread(times):.3f} |",
                  flush=True)
    finally:
        backend.close()
    order = np.random.default_rng(1).permutation(len(passes))
    estimator = VerifyTimeEstimator()
    for k, i in enumerate(order):
        if k == args.repeat:
            estimator.forget_errors()  # its first passes are its calibration
        estimator.observe(*passes[i])
    error = estimator.median_relative_error()
    print(f"\nmedian relative deviation over shapes (the floor): {statistics.median(all_spreads):.3f}")
    print(f"the estimator's median relative error on the same passes, shuffled, after {args.repeat}: "
          f"{error:.3f}; coefficients {np.round(estimator.coef, 5).tolist()}")
    print(f"reproduce: .venv/bin/python -m clients.bench.pass_noise --backend {args.backend} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
