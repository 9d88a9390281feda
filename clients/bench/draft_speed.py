"""`python -m clients.bench.draft_speed`: decode speed of drafts against the target in llama.cpp,
with repeats, and their greedy agreement with it.

Each run times a greedy decode step (batch 1, the median of 48 steps after the first bench
prompt, ``verifier.distill.evaluate.decode_ms``) for every model, the models in a carry-over
balanced order; the speed ratio (target ms / draft ms) is taken run by run, then summarised as
median [min-max]. ``--agreement`` adds each draft's greedy agreement with the target GGUF
(``tandem-draft eval``'s measure; deterministic, measured once). ``--requantize TYPE`` adds a copy
of the first draft with its layers requantised to TYPE (from the shipped Q8_0 layers, so it
carries both roundings), to measure what the export's layer type costs.

    .venv/bin/python -m clients.bench.draft_speed --runs 5 --agreement clients/prompts/bench.jsonl \\
        --requantize q4_1 --out docs/draft-speed/results.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.bench.raw import write_raw
from clients.bench.spread import balanced, spread
from verifier.core.chat_template import ChatTemplate
from verifier.core.cpu import read_cpu
from verifier.core.gguf import load_llama
from verifier.core.models import default_draft_path, target_gguf_path
from verifier.core.prompts import load_prompts

FTYPES = {"q4_1": 3, "q5_1": 9, "q8_0": 7}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* values


def requantize(source: Path, kind: str, out: Path) -> Path:
    """``source`` with every quantisable tensor requantised to ``kind`` (llama.cpp's quantiser)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not requantise {source} to {kind}")
    return out


def first_prompt(prompts_file: Path) -> list[int]:
    """The first bench prompt in the target's chat template, as the target's tokens."""
    tok = load_llama(target_gguf_path(), vocab_only=True)
    template = ChatTemplate(tok.metadata.get("tokenizer.chat_template"), "", "")
    messages = load_prompts(prompts_file)[0].messages
    return list(tok.tokenize(template.render(messages).encode(), add_bos=False, special=True))


def timings(models: dict[str, Path], prompt: list[int], runs: int, threads: int) -> list[dict[str, Any]]:
    """Per run, each model's ms per decode step, the models in a balanced order."""
    from verifier.distill.evaluate import decode_ms

    loaded = {name: load_llama(path, n_ctx=1024, threads=threads) for name, path in models.items()}
    out = []
    for run in range(runs):
        for name in balanced(list(models), run):
            out.append({"run": run, "model": name, "ms_per_token": round(decode_ms(loaded[name], prompt), 4)})
            print(f"run {run}: {name} {out[-1]['ms_per_token']:.3f} ms/token", flush=True)
    return out


def table(models: dict[str, Path], runs: list[dict[str, Any]], agreement: dict[str, float]) -> list[str]:
    lines = ["| model | ms per token | speed ratio (target / model) | greedy agreement |", "|---|---|---|---|"]
    target = {r["run"]: r["ms_per_token"] for r in runs if r["model"] == "target"}
    for name in models:
        mine = {r["run"]: r["ms_per_token"] for r in runs if r["model"] == name}
        ratio = spread([target[k] / v for k, v in mine.items()]).cell(2) if name != "target" else "1"
        agree = f"{agreement[name]:.3f}" if name in agreement else "-"
        lines.append(f"| {name} | {spread(list(mine.values())).cell(3)} | {ratio} | {agree} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafts", type=Path, nargs="+", default=[default_draft_path()])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=Path, default=Path("clients/prompts/bench.jsonl"))
    parser.add_argument("--agreement", type=Path, default=None, help="prompts for each draft's greedy agreement")
    parser.add_argument("--requantize", choices=sorted(FTYPES), default=None,
                        help="also measure the first draft with its layers requantised to this type")
    parser.add_argument("--out", type=Path, default=None, help="write the raw runs here as JSON")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    if len({d.stem for d in args.drafts} | {"target"}) != len(args.drafts) + 1:
        parser.error("each draft needs a file name of its own, and none named target")
    models = {"target": target_gguf_path(), **{d.stem: d for d in args.drafts}}
    with tempfile.TemporaryDirectory() as scratch:
        if args.requantize:
            first = args.drafts[0]
            models[f"{first.stem}, layers {args.requantize}"] = requantize(
                first, args.requantize, Path(scratch) / f"{first.stem}-{args.requantize}.gguf")
        runs = timings(models, first_prompt(args.prompts), args.runs, args.threads)
        agreement: dict[str, float] = {}
        if args.agreement is not None:
            from verifier.distill.evaluate import evaluate

            for name, path in models.items():
                if name != "target":
                    agreement[name] = evaluate(target_gguf_path(), path, args.agreement, threads=args.threads
                                               ).greedy_acceptance
    command = " ".join(["python -m clients.bench.draft_speed", *(sys.argv[1:] if argv is None else argv)])
    print("\n".join(table(models, runs, agreement)))
    print(f"\ncpu: {read_cpu().describe()}\nreproduce: .venv/bin/{command}")
    write_raw(args.out, command, load_start, threads=args.threads, models={k: str(v) for k, v in models.items()},
              runs=runs, greedy_agreement=agreement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
