"""How often batch composition flips a greedy near-tie on the vLLM backend: the rate the
greedy-identity tests live with (vLLM's CPU kernels are not batch-invariant).

    .venv/bin/python -m clients.bench.tie_flips --limit 12 --max-tokens 48 --gamma 4

Bench prompts (chat template), greedy, the vLLM backend in-process (float32 unless
``--dtype``). Every way is compared with **single**, each prompt decoded alone by vLLM (one
streaming request at a time, top-2 logprobs kept for the margins):

- ``batched``: all prompts decoded at once (vLLM's continuous batching); after a flip the
  sequences part, so only each sequence's first flip counts;
- ``rounds``: the single run's tokens scored back as verify rounds of ``--gamma`` + 1 tokens,
  every prompt's round of a step in one ``ScoreBatch`` (the backend's greedy route: prefix
  cache, top-1 prompt logprobs, batched), each row's argmax against the single run's token;
  teacher-forced, so every position counts;
- ``rounds-alone``: the same rounds one prompt per batch;
- ``live``: the single run's tokens sent as the drafts of live rounds (the backend's live route:
  vLLM's own spec decoding in one streaming request per prompt, every prompt's session at once);
  a rejected draft or a differing bonus token is a flip, after which the session is opened again
  on the single run's tokens (teacher-forced, so every position counts).

Prints, per way: tokens compared, flips, flips per 1000 tokens, and the single run's top-2
logprob margin at each flip (a flip at a margin well above float noise would be a bug).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from proxy.tokenizer import Tokenizer
from verifier.backends.base import ScoreBatch
from verifier.backends.vllm_backend import VllmBackend
from verifier.core.chat_template import ChatTemplate
from verifier.core.logprobs import TokenLogprob
from verifier.core.models import default_target_dir, target_gguf_path
from verifier.core.prompts import load_prompts
from verifier.core.protocol import GenerateRequest, SamplingParams

PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"


@dataclass
class Flips:
    """Tokens compared and the single run's top-2 margin at each flip."""

    compared: int = 0
    margins: list[float] = field(default_factory=list)

    def row(self, way: str) -> str:
        per_k = 1000 * len(self.margins) / max(1, self.compared)
        shown = ", ".join(f"{m:.4f}" for m in sorted(self.margins)) or "-"
        return f"| {way} | {self.compared} | {len(self.margins)} | {per_k:.2f} | {shown} |"


def margin(entry: TokenLogprob) -> float:
    """Top-1 minus top-2 logprob at a position of the single run."""
    tops = [lp for _, lp in entry.top]
    return tops[0] - tops[1] if len(tops) > 1 else float("inf")


async def decode(backend: VllmBackend, prompt: list[int], max_tokens: int,
                 eos: list[int]) -> tuple[list[int], list[TokenLogprob]]:
    tokens: list[int] = []
    entries: list[TokenLogprob] = []
    req = GenerateRequest(prompt_token_ids=prompt, max_tokens=max_tokens, stop_token_ids=eos, logprobs=2)
    async for new, logprobs in backend.decode(req):
        tokens += new
        entries += logprobs or []
    return tokens, entries


def first_flip(single: Sequence[int], other: Sequence[int], entries: Sequence[TokenLogprob], flips: Flips) -> None:
    """Compare up to the first difference (the sequences part there)."""
    for i, (a, b) in enumerate(zip(single, other)):
        flips.compared += 1
        if a != b:
            flips.margins.append(margin(entries[i]))
            return


def rounds(backend: VllmBackend, prompts: Sequence[list[int]], singles: Sequence[list[int]],
           entries: Sequence[list[TokenLogprob]], gamma: int, together: bool, flips: Flips) -> None:
    """The single runs' tokens scored back in rounds of ``gamma`` + 1; every row's argmax
    against the single run's next token."""
    states = [backend.new_state() for _ in prompts]
    groups = [list(range(len(prompts)))] if together else [[i] for i in range(len(prompts))]
    try:
        for group in groups:
            backend.score(ScoreBatch.of([(states[i], prompts[i][:-1], 0) for i in group], [False] * len(group)))
            seqs = {i: prompts[i] + singles[i] for i in group}
            pos = {i: len(prompts[i]) - 1 for i in group}  # the state holds seq[:pos]
            while live := [i for i in group if pos[i] < len(seqs[i]) - 1]:
                sizes = [min(gamma + 1, len(seqs[i]) - 1 - pos[i]) for i in live]
                items = [(states[i], seqs[i][pos[i]:pos[i] + n], n) for i, n in zip(live, sizes)]
                rows = backend.score(ScoreBatch.of(items, [False] * len(items)))
                for i, n, r in zip(live, sizes, rows):
                    for j, predicted in enumerate(np.argmax(r, axis=-1).tolist()):
                        out = pos[i] + 1 + j - len(prompts[i])  # the output position row j predicts
                        flips.compared += 1
                        if predicted != singles[i][out]:
                            flips.margins.append(margin(entries[i][out]))
                    pos[i] += n
    finally:
        for state in states:
            backend.release(state)


async def live_rounds(backend: VllmBackend, prompts: Sequence[list[int]], singles: Sequence[list[int]],
                      entries: Sequence[list[TokenLogprob]], gamma: int, flips: Flips) -> None:
    """The single runs' tokens as the drafts of live rounds of ``gamma``, all prompts at once."""

    async def one(i: int) -> None:
        seq, start = prompts[i] + singles[i], len(prompts[i])
        pos = start - 1  # seq[:pos + 1] is committed; seq[pos] is the round's last token
        handle = await backend.open_live(seq[:pos + 1], SamplingParams())
        try:
            while pos < len(seq) - 1:
                drafts = seq[pos + 1:pos + 1 + gamma]
                got = await backend.live_round(handle, seq[pos], drafts)
                accepted = len(got) - 1
                checked = min(accepted + 1, len(seq) - 1 - pos)  # the bonus past the run's end is not compared
                flips.compared += checked
                if checked == accepted + 1 and got[-1] != seq[pos + 1 + accepted]:
                    flips.margins.append(margin(entries[i][pos + 1 + accepted - start]))
                    pos += accepted + 1
                    await backend.close_live(handle)  # parted from the single run: open again on it
                    handle = await backend.open_live(seq[:pos + 1], SamplingParams())
                else:
                    pos += checked
        finally:
            await backend.close_live(handle)

    await asyncio.gather(*(one(i) for i in range(len(prompts))))


async def measure(limit: int, max_tokens: int, gamma: int, dtype: str) -> dict[str, Flips]:
    tok = Tokenizer(target_gguf_path())
    template = ChatTemplate(tok.chat_template, tok.bos_text, tok.eos_text)
    prompts = [tok.encode(template.render(p.messages), special=True) for p in load_prompts(PROMPTS, limit)]
    backend = VllmBackend(default_target_dir(), dtype=dtype)
    eos = backend.info.eos_token_ids
    try:
        singles, entries = [], []
        for prompt in prompts:
            tokens, logprobs = await decode(backend, prompt, max_tokens, eos)
            singles.append(tokens)
            entries.append(logprobs)
        together = await asyncio.gather(*(decode(backend, p, max_tokens, eos) for p in prompts))
        out = {way: Flips() for way in ("batched", "rounds", "rounds-alone", "live")}
        for single, (other, _), logprobs in zip(singles, together, entries):
            first_flip(single, other, logprobs, out["batched"])
        rounds(backend, prompts, singles, entries, gamma, True, out["rounds"])
        rounds(backend, prompts, singles, entries, gamma, False, out["rounds-alone"])
        await live_rounds(backend, prompts, singles, entries, gamma, out["live"])
        return out
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    flips = asyncio.run(measure(args.limit, args.max_tokens, args.gamma, args.dtype))
    print("| against single | tokens compared | flips | per 1000 tokens | single run's top-2 margin at each flip |")
    print("|---|---|---|---|---|")
    for way, f in flips.items():
        print(f.row(way))
    print(f"\nreproduce: .venv/bin/python -m clients.bench.tie_flips --limit {args.limit} "
          f"--max-tokens {args.max_tokens} --gamma {args.gamma} --dtype {args.dtype}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
