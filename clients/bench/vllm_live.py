"""The live vLLM route (``verifier.backends.vllm_live``, a prototype) against vLLM's own decoding:
is it exact, and what does a round cost next to one decode step?

  .venv/bin/python -m clients.bench.vllm_live --limit 8 --max-tokens 48 --sessions 1 8 --sampled-cost

Two engines side by side in one process, float32, block size 32, prefix caching, eager:
``plain`` (vLLM as the backend runs it today) and ``live`` (spec decode on, with Tandem's
scheduler and a proposer that proposes nothing). For each set of ``--sessions`` prompts, run at
once:

- ``plain``: vLLM decodes each prompt greedily (the reference); its time between tokens is the
  decode step;
- ``live``: one live session per prompt; each round sends up to K drafts taken from the
  reference, with planted errors (seeded: 40% of rounds one wrong draft at a random place, 15%
  fewer than K drafts), and must get back exactly the accepted drafts and the reference's next
  token. Its round time is the time from sending a round to its answer.

The drafts are the reference's own tokens, spoiled on purpose: this measures the route's cost
and exactness, not a draft model's acceptance. Rows per committed token: the rows a round
computes (1 + its drafts) over the tokens it commits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from verifier.backends.vllm_args import LIVE_PROPOSER, live_engine_args
from verifier.backends.vllm_live import NoDrafts
from verifier.backends.vllm_sessions import LiveSampling, LiveStream
from verifier.core.cpu import read_cpu
from verifier.core.models import default_target_dir

PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"


@dataclass
class SessionResult:
    prompt: int
    rounds: int = 0
    rows: int = 0
    committed: int = 0
    mismatches: int = 0
    round_s: list[float] = field(default_factory=list)


class NoDraftsAsVllmShipsIt(NoDrafts):
    """The planted bug of ``--as-vllm-ships-it``: Tandem's proposer without its kernel fix, so
    sampled rounds run vLLM 0.32's CPU expand kernel as shipped (garbage temperatures)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def engine_args(model: str, k: int, live: bool, proposer: str = LIVE_PROPOSER) -> Any:
    from vllm.engine.arg_utils import AsyncEngineArgs

    extra = live_engine_args(k, proposer) if live else {}
    # on CPU the memory fraction is only a start-up check against the NUMA node's free memory (the KV
    # cache is VLLM_CPU_KVCACHE_SPACE); vLLM's 0.92 fails once the page cache holds a few GiB
    return AsyncEngineArgs(model=model, dtype="float32", enable_prefix_caching=True, block_size=32,
                           enforce_eager=True, seed=0, max_model_len=2048, disable_log_stats=True,
                           gpu_memory_utilization=0.3, **extra)


async def plain_decode(engine: Any, prompt: list[int], max_tokens: int, rid: str) -> tuple[list[int], list[float]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True, detokenize=False,
                            output_kind=RequestOutputKind.DELTA)
    tokens: list[int] = []
    gaps: list[float] = []
    last = time.perf_counter()
    async for out in engine.generate(TokensPrompt(prompt_token_ids=prompt), params, rid):
        now = time.perf_counter()
        if tokens:  # the first gap is the prefill
            gaps.append(now - last)
        last = now
        tokens += out.outputs[0].token_ids
    return tokens, gaps


def live_session_of(engine: Any, k: int, temperature: float, rid: str) -> LiveStream:
    """One live session as the verifier's vLLM backend opens it (``verifier.backends.vllm_sessions``)."""
    return LiveStream(engine, rid, LiveSampling(temperature, 1.0, 0), k)


def spoil(reference: Sequence[int], pos: int, k: int, rng: random.Random, vocab: int) -> list[int]:
    drafts = list(reference[pos:pos + k])
    kind = rng.random()
    if kind < 0.4 and drafts:
        j = rng.randrange(len(drafts))
        drafts[j] = (drafts[j] + 1) % vocab
    elif kind < 0.55:
        drafts = drafts[:rng.randrange(0, len(drafts) + 1)]
    return drafts


async def live_session(engine: Any, prompt: list[int], reference: list[int], k: int, seed: int, vocab: int,
                       index: int) -> SessionResult:
    """One live session over ``prompt``: the prefill, then rounds until the reference is used up."""
    rng = random.Random(seed)
    result = SessionResult(index)
    session = live_session_of(engine, k, 0.0, f"live-{index}-{seed}")
    await session.open(prompt)
    last, pos = prompt[-1], 0
    while pos + k + 1 <= len(reference):
        drafts = spoil(reference, pos, k, rng, vocab)
        start = time.perf_counter()
        got = await session.round(last, drafts)
        result.round_s.append(time.perf_counter() - start)
        accepted = 0
        while accepted < len(drafts) and drafts[accepted] == reference[pos + accepted]:
            accepted += 1
        want = reference[pos:pos + accepted + 1]
        if got != want:
            result.mismatches += 1
            print(f"  MISMATCH prompt {index} at {pos}: drafts {drafts} got {got} want {want}", file=sys.stderr)
        result.rounds += 1
        result.rows += 1 + len(drafts)
        result.committed += len(want)
        pos += len(want)
        last = want[-1]
    await session.close()
    return result


async def cost_session(engine: Any, prompt: list[int], reference: list[int], k: int, sampling: LiveSampling,
                       rid: str) -> list[float]:
    """Round times of one live session under ``sampling`` whose every round carries exactly ``k``
    drafts (the reference's tokens from where the session stands: a sampled session leaves the
    greedy path, so its drafts are then rejected, but each round still computes 1 + k rows)."""
    session = LiveStream(engine, rid, sampling, k)
    await session.open(prompt)
    committed: list[int] = []
    times: list[float] = []
    last = prompt[-1]
    while len(committed) + k + 1 <= len(reference):
        drafts = reference[len(committed):len(committed) + k]
        start = time.perf_counter()
        got = await session.round(last, drafts)
        times.append(time.perf_counter() - start)
        committed += got
        last = got[-1]
    await session.close()
    return times


async def sampled_cost(args: argparse.Namespace, engine: Any, prompts: list[list[int]],
                       references: list[list[int]]) -> dict[str, Any]:
    """A round of k drafts, sampled (``--temperature``, ``--top-p``) against greedy, one session at
    a time, the two alternating in rotated order (greedy first on even prompts)."""
    greedy, sampled_ = LiveSampling(0.0, 1.0, 0), LiveSampling(args.temperature, args.top_p, 0)
    times: dict[str, list[float]] = {"greedy": [], "sampled": []}
    per_prompt: list[dict[str, float]] = []
    for i, (prompt, reference) in enumerate(zip(prompts, references, strict=True)):
        order = [("greedy", greedy), ("sampled", sampled_)]
        row: dict[str, float] = {"prompt": i}
        for name, sampling in order if i % 2 == 0 else order[::-1]:
            got = await cost_session(engine, prompt, reference, args.k, sampling, f"cost-{name}-{i}")
            times[name] += got
            row[f"{name}_median_ms"] = round(statistics.median(got) * 1000, 1)
        per_prompt.append(row)
    report = {"temperature": args.temperature, "top_p": args.top_p, "k": args.k,
              "greedy_round": quantiles(times["greedy"]), "sampled_round": quantiles(times["sampled"]),
              "sampled_over_greedy": round(statistics.median(times["sampled"]) / statistics.median(times["greedy"]), 3),
              "rounds": {name: len(ts) for name, ts in times.items()}, "per_prompt": per_prompt}
    print(f"sampled T={args.temperature} top_p={args.top_p} round of {args.k} drafts "
          f"{report['sampled_round']['median_ms']} ms, greedy {report['greedy_round']['median_ms']} ms: "
          f"{report['sampled_over_greedy']}x", flush=True)
    return report


async def first_token_draws(engine: Any, prompt: list[int], draft: int, k: int, sampling: LiveSampling, draws: int,
                            at_once: int) -> list[list[int]]:
    """``draws`` live sessions over ``prompt``, each one sampled round with the single draft
    ``draft``: what each round returned (the accepted draft and the bonus, or a correction)."""

    async def one(i: int) -> list[int]:
        session = LiveStream(engine, f"draw-{i}", sampling, k)
        await session.open(prompt)
        got = await session.round(prompt[-1], [draft])
        await session.close()
        return got

    results: list[list[int]] = []
    for start in range(0, draws, at_once):
        results += await asyncio.gather(*(one(i) for i in range(start, min(draws, start + at_once))))
    return results


def target_probs(model: str, prompt: list[int], temperature: float, top_p: float = 1.0) -> Any:
    """The target's next-token distribution after ``prompt`` under ``temperature`` and ``top_p``
    (the likeliest tokens while the mass above them is below top_p, renormalised), from
    transformers in float32 and numpy in float64 (independent of vLLM)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        logits = lm(torch.tensor([prompt])).logits[0, -1].double()
    probs = torch.softmax(logits / temperature, dim=-1).numpy()
    if top_p < 1:
        order = np.argsort(-probs)
        above = np.cumsum(probs[order]) - probs[order]
        nucleus = np.zeros_like(probs)
        nucleus[order[above < top_p]] = probs[order[above < top_p]]
        probs = nucleus / nucleus.sum()
    return probs


def chi_square(counts: dict[int, int], probs: Any, draws: int) -> tuple[float, int]:
    """Pearson's chi-square p-value of ``counts`` against ``probs`` (tokens expected fewer than
    5 times pooled into one bin), and the number of bins."""
    import numpy as np
    from scipy.stats import chisquare

    big = [int(t) for t in np.nonzero(probs * draws >= 5)[0]]
    observed = [counts.get(t, 0) for t in big] + [draws - sum(counts.get(t, 0) for t in big)]
    expected = [float(probs[t]) * draws for t in big] + [draws * (1 - float(sum(probs[t] for t in big)))]
    if expected[-1] < 5:  # nothing left to pool: fold the rest into the last bin
        rest_observed, rest_expected = observed.pop(), expected.pop()
        observed[-1] += rest_observed
        expected[-1] += rest_expected
    return float(chisquare(observed, expected).pvalue), len(observed)


async def sampled(args: argparse.Namespace, engine: Any, model: str, prompt: list[int]) -> dict[str, Any]:
    """Sampled rounds through the live route: is the first token distributed as the target's p?"""
    import numpy as np

    probs = target_probs(model, prompt, args.temperature, args.top_p)
    draft = int(np.argsort(probs)[-2])  # the second likeliest token: accepted now and then
    started = time.perf_counter()
    rounds = await first_token_draws(engine, prompt, draft, args.k, LiveSampling(args.temperature, args.top_p, 0),
                                     args.sampled_draws, args.at_once)
    elapsed = time.perf_counter() - started
    counts: dict[int, int] = {}
    for r in rounds:
        counts[r[0]] = counts.get(r[0], 0) + 1
    accepted = sum(1 for r in rounds if r[0] == draft and len(r) == 2)
    p_value, bins = chi_square(counts, probs, len(rounds))
    wrong = chi_square({draft: len(rounds)}, probs, len(rounds))[0]  # twin: a route that accepts every draft
    power = shift_power(probs, len(rounds), bins, args.tv, args.alpha)
    shifted = shifted_law(probs, args.tv)  # twin: the same number of draws from a law args.tv off
    drawn = np.random.default_rng(args.seed).multinomial(len(rounds), shifted)
    p_value_shifted = chi_square({int(t): int(c) for t, c in enumerate(drawn) if c}, probs, len(rounds))[0]
    keeps_d = (1 - probs[draft]) * probs  # twin: a rejected draft's replacement drawn from p, the draft left in
    keeps_d[draft] += probs[draft]
    drawn = np.random.default_rng(args.seed + 1).multinomial(len(rounds), keeps_d)
    p_value_keeps_d = chi_square({int(t): int(c) for t, c in enumerate(drawn) if c}, probs, len(rounds))[0]
    support = set(counts) | {int(t) for t in np.nonzero(probs)[0]}
    tv = 0.5 * sum(abs(counts.get(t, 0) / len(rounds) - float(probs[t])) for t in support)
    print(f"sampled T={args.temperature} top_p={args.top_p}: {len(rounds)} rounds in {elapsed:.0f} s, draft "
          f"p={probs[draft]:.3f}, accepted {accepted / len(rounds):.3f}; chi-square p-value {p_value:.3g} over {bins} "
          f"bins (a route accepting every draft: {wrong:.3g}); power against a {args.tv} total-variation shift "
          f"between the two likeliest tokens at alpha {args.alpha}: {power:.3f} (one simulated such run: p-value "
          f"{p_value_shifted:.3g}; a replacement drawn with the draft left in: {p_value_keeps_d:.3g}); observed "
          f"total variation {tv:.4f}", flush=True)
    return {"temperature": args.temperature, "top_p": args.top_p, "draws": len(rounds), "draft": draft,
            "draft_p": float(probs[draft]), "seconds": round(elapsed, 1),
            "accepted": accepted, "p_value": p_value, "bins": bins, "p_value_accept_all": wrong,
            "alpha": args.alpha, "tv_shift": args.tv, "power_at_tv_shift": power,
            "p_value_tv_shifted_simulated": p_value_shifted, "p_value_residual_keeps_draft_simulated": p_value_keeps_d,
            "observed_tv": tv,
            "first_tokens": counts}


def shifted_law(probs: Any, tv: float) -> Any:
    """``probs`` with ``tv`` of mass moved from the likeliest token to the second likeliest."""
    import numpy as np

    top, second = (int(t) for t in np.argsort(probs)[::-1][:2])
    shifted = probs.copy()
    shifted[top] -= tv
    shifted[second] += tv
    return shifted


def shift_power(probs: Any, draws: int, bins: int, tv: float, alpha: float) -> float:
    """The power of ``chi_square`` (``draws`` draws over ``bins`` bins, level ``alpha``) against a
    route whose law moves ``tv`` of mass from the likeliest token to the second likeliest (a
    total-variation error of ``tv``): the noncentral chi-square with lambda = draws * sum((a - p)^2 /
    p) over the test's bins, in which both tokens have a bin of their own."""
    from scipy.stats import chi2, ncx2

    moved = shifted_law(probs, tv) - probs  # nonzero at the two tokens alone
    lam = draws * float((moved[moved != 0] ** 2 / probs[moved != 0]).sum())
    return float(ncx2.sf(chi2.isf(alpha, bins - 1), bins - 1, lam))


def quantiles(xs: Sequence[float]) -> dict[str, float]:
    xs = sorted(xs)
    pick = (lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]) if xs else (lambda q: float("nan"))
    return {"median_ms": round(statistics.median(xs) * 1000, 1) if xs else float("nan"),
            "p10_ms": round(pick(0.1) * 1000, 1), "p90_ms": round(pick(0.9) * 1000, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer
    from vllm.v1.engine.async_llm import AsyncLLM

    from verifier.backends.vllm_live import check_internals

    check_internals()

    model = str(args.model or default_target_dir())
    tokenizer = AutoTokenizer.from_pretrained(model)
    lines = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()][:args.limit]
    prompts = [tokenizer.encode(tokenizer.apply_chat_template(item["messages"], add_generation_prompt=True,
                                                              tokenize=False), add_special_tokens=False)
               for item in lines]
    vocab = len(tokenizer)
    plain = AsyncLLM.from_engine_args(engine_args(model, args.k, live=False))
    proposer = "clients.bench.vllm_live.NoDraftsAsVllmShipsIt" if args.as_vllm_ships_it else LIVE_PROPOSER
    live = AsyncLLM.from_engine_args(engine_args(model, args.k, live=True, proposer=proposer))
    await plain_decode(plain, prompts[0], 4, "warm-plain")
    await plain_decode(live, prompts[0], 4, "warm-live")
    points: list[dict[str, Any]] = []
    try:
        for n in args.sessions:
            for start in range(0, len(prompts) - n + 1, n):
                group = list(range(start, start + n))
                references = await asyncio.gather(*(plain_decode(plain, prompts[i], args.max_tokens, f"p-{n}-{i}")
                                                    for i in group))
                sessions = await asyncio.gather(*(
                    live_session(live, prompts[i], references[j][0], args.k, args.seed + i, vocab, i)
                    for j, i in enumerate(group)))
                steps = [g for _, gaps in references for g in gaps]
                rounds = [s for r in sessions for s in r.round_s]
                point = {"sessions": n, "prompts": group, "decode_step": quantiles(steps),
                         "live_round": quantiles(rounds),
                         "round_over_step": round(statistics.median(rounds) / statistics.median(steps), 3),
                         "rows_per_token": round(sum(r.rows for r in sessions) / sum(r.committed for r in sessions), 3),
                         "tokens_per_round": round(sum(r.committed for r in sessions) / sum(r.rounds for r in sessions),
                                                   3),
                         "mismatches": sum(r.mismatches for r in sessions),
                         "sessions_detail": [asdict(r) for r in sessions]}
                points.append(point)
                print(f"sessions {n} prompts {group}: decode step {point['decode_step']['median_ms']} ms, live round "
                      f"{point['live_round']['median_ms']} ms ({point['round_over_step']}x), "
                      f"{point['tokens_per_round']} tokens/round, rows/token {point['rows_per_token']}, "
                      f"mismatches {point['mismatches']}", flush=True)
        sampled_report = await sampled(args, live, model, prompts[0]) if args.sampled_draws else None
        cost_report = None
        if args.sampled_cost:
            greedy_runs = [(await plain_decode(plain, p, args.max_tokens, f"ref-{i}"))[0]
                           for i, p in enumerate(prompts)]
            cost_report = await sampled_cost(args, live, prompts, greedy_runs)
    finally:
        plain.shutdown()
        live.shutdown()
    return {"command": " ".join(["python -m clients.bench.vllm_live", *sys.argv[1:]]), "cpu": read_cpu().describe(),
            "k": args.k, "max_tokens": args.max_tokens, "points": points, "sampled": sampled_report,
            "sampled_cost": cost_report}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="target HF directory (default: the prepared target)")
    parser.add_argument("--limit", type=int, default=8, help="bench prompts")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--k", type=int, default=4, help="drafts per round at most (vLLM's spec slots)")
    parser.add_argument("--sessions", type=int, nargs="*", default=[1, 8], help="sessions at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampled-draws", type=int, default=0,
                        help="then this many sampled rounds at one position, against the target's distribution")
    parser.add_argument("--at-once", type=int, default=16, help="sampled rounds (sessions) run at once")
    parser.add_argument("--tv", type=float, default=0.02,
                        help="the total-variation error whose detection power the sampled run reports")
    parser.add_argument("--alpha", type=float, default=1e-3, help="the chi-square test's level for that power")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95,
                        help="of the sampled rounds (--sampled-draws, --sampled-cost)")
    parser.add_argument("--sampled-cost", action="store_true",
                        help="then a round of --k drafts sampled (--temperature, --top-p) against greedy, "
                        "per prompt")
    parser.add_argument("--as-vllm-ships-it", action="store_true",
                        help="a planted bug: the live engine without Tandem's fix of vLLM's CPU expand kernel")
    parser.add_argument("--out", type=Path, default=None, help="write the raw results here (JSON)")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    report = asyncio.run(run(args))
    print(f"command: {report['command']}\ncpu: {report['cpu']}")
    mismatches = sum(p["mismatches"] for p in report["points"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if mismatches:
        raise SystemExit(f"{mismatches} live rounds differ from vLLM's own greedy decoding")


if __name__ == "__main__":
    main()
