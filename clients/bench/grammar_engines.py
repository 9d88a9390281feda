"""`python -m clients.bench.grammar_engines`: the three maintained grammar engines side by side
on the default vocabulary (SmolLM2, 49,152 tokens), for the choice behind ``verifier.core.grammar``
(xgrammar and outlines-core come with the vllm extra, which `make setup` installs).

For a JSON schema and for any JSON object (json_object), each engine compiles the grammar,
then walks a fixed valid output token by token computing the next-token mask at every
position (what a verify round does per row). Each run compiles afresh, the engines in a
carry-over balanced order; prints per engine and grammar the compile time and the median and p90
mask time per token as median [min-max] over the runs, and whether each engine can express the
grammar at all.

    .venv/bin/python -m clients.bench.grammar_engines --repeat 5 --runs 3 --out docs/grammar-engines/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clients.bench.raw import write_raw
from clients.bench.spread import balanced, spread
from verifier.core.cpu import read_cpu
from verifier.core.models import default_target_dir

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                           "age": {"type": "integer", "minimum": 0},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age", "tags"], "additionalProperties": False}
OUTPUT = '{"name": "Ada Lovelace", "age": 36, "tags": ["mathematician", "writer", "analyst"]}'
STOP = 2  # <|im_end|>

Walk = Callable[[list[int]], list[float]]  # mask seconds per position of an output


def llguidance_engine(schema: dict[str, Any]) -> tuple[float, Walk, Callable[[str], list[int]]]:
    import llguidance

    path = str(default_target_dir() / "tokenizer.json")
    tok = llguidance.LLTokenizer(path, eos_token=[STOP])
    t0 = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": True})
    matcher = llguidance.LLMatcher(tok, grammar, log_level=0)
    compile_s = time.perf_counter() - t0

    def walk(ids: list[int]) -> list[float]:
        matcher.reset()
        times = []
        for t in ids:
            t0 = time.perf_counter()
            matcher.compute_bitmask()
            times.append(time.perf_counter() - t0)
            if not matcher.consume_token(t):
                raise RuntimeError("llguidance refused a valid token")
        return times

    return compile_s, walk, tok.tokenize_str


def xgrammar_engine(schema: dict[str, Any]) -> tuple[float, Walk, Callable[[str], list[int]]]:
    import xgrammar as xgr
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(default_target_dir())
    info = xgr.TokenizerInfo.from_huggingface(hf, stop_token_ids=[STOP])
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    t0 = time.perf_counter()
    compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=True)
    compile_s = time.perf_counter() - t0
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def walk(ids: list[int]) -> list[float]:
        matcher = xgr.GrammarMatcher(compiled)
        times = []
        for t in ids:
            t0 = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append(time.perf_counter() - t0)
            if not matcher.accept_token(t):
                raise RuntimeError("xgrammar refused a valid token")
        return times

    return compile_s, walk, lambda text: hf.encode(text, add_special_tokens=False)


def outlines_engine(schema: dict[str, Any]) -> tuple[float, Walk, Callable[[str], list[int]]]:
    import llguidance
    from outlines_core import Guide, Index, Vocabulary  # type: ignore[import-untyped]
    from outlines_core.json_schema import build_regex_from_schema  # type: ignore[import-untyped]
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(default_target_dir())
    lltok = llguidance.LLTokenizer(str(default_target_dir() / "tokenizer.json"), eos_token=[STOP])
    pieces: dict[bytes, list[int]] = {}
    for i in range(lltok.vocab_size):  # every token's bytes (special tokens have none here)
        if i != STOP and not lltok.is_special_token(i):
            pieces.setdefault(lltok.decode_bytes([i]), []).append(i)
    vocab = Vocabulary(STOP, pieces)
    t0 = time.perf_counter()
    index = Index(build_regex_from_schema(json.dumps(schema)), vocab)
    compile_s = time.perf_counter() - t0

    def walk(ids: list[int]) -> list[float]:
        guide = Guide(index)
        times = []
        for t in ids:
            t0 = time.perf_counter()
            np.asarray(guide.get_tokens())
            times.append(time.perf_counter() - t0)
            guide.advance(t)
        return times

    return compile_s, walk, lambda text: hf.encode(text, add_special_tokens=False)


ENGINES = {"llguidance": llguidance_engine, "xgrammar": xgrammar_engine, "outlines-core": outlines_engine}
GRAMMARS: dict[str, dict[str, Any]] = {"json_schema": SCHEMA, "json_object": {"type": "object"}}


def measure(name: str, label: str, walks: int) -> dict[str, Any]:
    """One run of one engine on one grammar: a fresh compile, then ``walks`` walks of the output."""
    try:
        compile_s, walk, encode = ENGINES[name](GRAMMARS[label])
        ids = encode(OUTPUT)
        times = [t for _ in range(walks) for t in walk(ids)]
    except Exception as exc:  # noqa: BLE001 - an engine that cannot do it is a result
        return {"engine": name, "grammar": label, "error": f"{type(exc).__name__}: {str(exc)[:80]}"}
    return {"engine": name, "grammar": label, "tokens": len(ids), "compile_ms": compile_s * 1e3,
            "mask_median_ms": statistics.median(times) * 1e3, "mask_p90_ms": float(np.percentile(times, 90)) * 1e3}


def table(runs: list[dict[str, Any]]) -> list[str]:
    """Per engine and grammar, each figure's median [min-max] over the runs."""
    lines = ["| engine | grammar | compile ms | mask median ms | mask p90 ms | note |", "|---|---|---|---|---|---|"]
    for name in ENGINES:
        for label in GRAMMARS:
            mine = [r for r in runs if r["engine"] == name and r["grammar"] == label]
            good = [r for r in mine if "error" not in r]
            if not good:
                lines.append(f"| {name} | {label} | - | - | - | {mine[0]['error'] if mine else 'not run'} |")
                continue
            cells = [spread([r[key] for r in good]).cell(digits) for key, digits in
                     (("compile_ms", 1), ("mask_median_ms", 3), ("mask_p90_ms", 3))]
            lines.append(f"| {name} | {label} | {' | '.join(cells)} | {good[0]['tokens']} tokens, {len(good)} runs |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="walks of the output per engine, grammar and run")
    parser.add_argument("--runs", type=int, default=3, help="runs, each compiling afresh, engines in balanced order")
    parser.add_argument("--out", type=Path, default=None, help="write the raw runs here as JSON")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    runs = [measure(name, label, args.repeat) for turn in range(args.runs)
            for name in balanced(list(ENGINES), turn) for label in GRAMMARS]
    command = f".venv/bin/python -m clients.bench.grammar_engines --repeat {args.repeat} --runs {args.runs}"
    print("\n".join(table(runs)))
    print(f"\ncpu: {read_cpu().describe()}\nreproduce: {command}")
    write_raw(args.out, command, load_start, runs=runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
