"""`python -m clients.bench.edit_forms`: which way of asking for an edit the target follows, before
timing anything: for each item of the edit workload and each form of the user's message, the
target's greedy answer (its Q4_1 GGUF in llama.cpp, the chat template of its metadata) and how
much of it is the original document (OpenAI's accepted prediction tokens, as the edge counts
them, over the answer's tokens). The served target (vLLM, float32) answers much the same; this
screen only ranks the forms, ``tandem-bench-predicted`` measures the speed.

    .venv/bin/python -m clients.bench.edit_forms [--forms document-first instruction-first]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from clients.bench.edits import FORMS, load_edits
from clients.bench.predicted import DEFAULT_PROMPTS
from clients.bench.raw import write_raw
from proxy.draft.prediction import PredictionCounts
from verifier.core.gguf import load_llama
from verifier.core.models import target_gguf_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="the edit workload (JSONL)")
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    parser.add_argument("--extra-tokens", type=int, default=64, help="max_tokens = the document's tokens + this")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="raw result (JSON)")
    args = parser.parse_args(argv)
    command = "python -m clients.bench.edit_forms --forms " + " ".join(args.forms) + \
        (f" --out {args.out}" if args.out else "")
    load_start = os.getloadavg()
    llm = load_llama(target_gguf_path(), n_ctx=2048, threads=args.threads)
    rows: list[dict[str, object]] = []
    for item in load_edits(args.prompts):
        document = llm.tokenize(item.document.encode("utf-8"), add_bos=False, special=False)
        for form in args.forms:
            reply = llm.create_chat_completion([{"role": "user", "content": item.message(form)}], temperature=0,
                                               max_tokens=len(document) + args.extra_tokens)
            text = reply["choices"][0]["message"]["content"] or ""  # type: ignore[index]
            answer = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            accepted = PredictionCounts.of(document, answer).accepted
            rows.append({"item": item.id, "form": form, "answer_tokens": len(answer), "document_tokens": len(document),
                         "accepted": accepted, "share": round(accepted / max(1, len(answer)), 3)})
            print(f"{item.id:20s} {form:18s} answer {len(answer):4d} document {len(document):4d} "
                  f"accepted {accepted:4d} share {rows[-1]['share']:.2f}", flush=True)
    for form in args.forms:
        shares = [float(r["share"]) for r in rows if r["form"] == form]  # type: ignore[arg-type]
        print(f"{form}: median share {statistics.median(shares):.2f}, items at 0.5 or more: "
              f"{sum(s >= 0.5 for s in shares)} of {len(shares)}")
    print(f"reproduce: {command}")
    write_raw(args.out, command, load_start, rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
