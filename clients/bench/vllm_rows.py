"""What whole-distribution rows cost through vLLM's public API: why sampled rounds are not
verified on the vLLM backend.

  .venv/bin/python -m clients.bench.vllm_rows --context 300 --drafts 4 --repeat 8

Exact verification of a sampled draft needs, at each draft position, the target's probability
of the draft token *under the request's temperature and top_p* and, at a rejection, a draw from
max(0, p - q). vLLM's prompt logprobs are raw (before temperature), so p under temperature needs
every row's normaliser, i.e. whole rows. Times one round (context plus ``--drafts`` + 1 new
tokens, prefix cache warm) for each way of getting rows out of vLLM, the ways in a carry-over
balanced order round by round:

- ``top1``: the greedy route of the backend (one request, prompt logprobs top-1);
- ``prompt-full``: one request with whole-vocabulary prompt logprobs (flat);
- ``rows-full``: one request per row, each whole-vocabulary sample logprobs (flat), rows
  turned into dense arrays as the backend would;
- ``rows-top1``: the same requests with top-1 logprobs (their compute without the rows).

vLLM's per-id prompt scoring (``prompt_logprob_token_ids``) needs its V2 model runner, which
needs Triton, absent on CPU (``VllmBackend`` docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clients.bench.raw import write_raw
from clients.bench.spread import balanced, spread
from verifier.backends.vllm_backend import final_output
from verifier.core.cpu import read_cpu
from verifier.core.models import default_target_dir

WAYS = ["top1", "prompt-full", "rows-full", "rows-top1"]


def _dense(logprobs: Any, vocab: int) -> np.ndarray:
    row = np.full(vocab, -np.inf, dtype=np.float32)
    row[np.asarray(logprobs.token_ids, dtype=np.int64)] = np.asarray(logprobs.logprobs, dtype=np.float32)
    return row


async def measure(context: int, drafts: int, repeat: int, block_size: int) -> dict[str, list[float]]:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(
        model=str(default_target_dir()), dtype="float32", enable_prefix_caching=True, block_size=block_size,
        enforce_eager=True, max_logprobs=-1, disable_log_stats=True))
    vocab = int(engine.model_config.get_vocab_size())
    rng = np.random.default_rng(0)
    tokens = rng.integers(100, 40000, size=context).tolist()
    ids = iter(range(10**9))
    await final_output(engine, tokens, SamplingParams(max_tokens=1, temperature=0.0, detokenize=False), "warm")
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        for turn in range(repeat):
            for way in balanced(WAYS, turn):
                tokens += rng.integers(100, 40000, size=drafts + 1).tolist()  # a new round on the same context
                rows = drafts + 1
                t0 = time.perf_counter()
                if way in ("top1", "prompt-full"):
                    n = 1 if way == "top1" else -1
                    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprobs=n,
                                            prompt_logprobs=n, flat_logprobs=True, skip_reading_prefix_cache=False)
                    await final_output(engine, tokens, params, f"r{next(ids)}")
                else:
                    n = -1 if way == "rows-full" else 1
                    params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False, logprobs=n,
                                            flat_logprobs=True)
                    outs: Sequence[Any] = await asyncio.gather(*(
                        final_output(engine, tokens[: len(tokens) - rows + 1 + r], params, f"r{next(ids)}")
                        for r in range(rows)))
                    if way == "rows-full":
                        for out in outs:
                            _dense(out.outputs[0].logprobs, vocab)
                times[way].append(time.perf_counter() - t0)
    finally:
        engine.shutdown()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", type=int, default=300)
    parser.add_argument("--drafts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=8, help="rounds per way, the ways interleaved round by round")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write every round's time here as JSON")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    times = asyncio.run(measure(args.context, args.drafts, args.repeat, args.block_size))
    print("| way | ms per round, median [min-max] | x top1 (round by round) |")
    print("|---|---|---|")
    for way, ts in times.items():
        ratio = spread([t / b for t, b in zip(ts, times["top1"])])
        print(f"| {way} | {spread([1000 * t for t in ts]).cell(1)} | {ratio.cell(2)} |")
    command = (f".venv/bin/python -m clients.bench.vllm_rows --context {args.context} --drafts {args.drafts} "
               f"--repeat {args.repeat} --block-size {args.block_size}")
    print(f"\ncpu: {read_cpu().describe()}\nreproduce: {command}")
    write_raw(args.out, command, load_start,
              round_ms={w: [round(1000 * t, 2) for t in ts] for w, ts in times.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
