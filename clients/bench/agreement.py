"""`python -m clients.bench.agreement`: how often the draft's greedy choice is the target's, per
position, with and without JSON mode: the ceiling of greedy acceptance, free of pipelining and
round triggers (``clients.bench.features`` measures the served system).

In one process: the target (transformers, float32) decodes each bench prompt greedily, in
JSON mode with the grammar's mask; at every position the draft model (llama.cpp, the edge's
GGUF) is asked for its argmax on the same context, masked as the edge masks it and unmasked.

    .venv/bin/python -m clients.bench.agreement --limit 12 --max-tokens 64 [--drafts A.gguf B.gguf]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from proxy.draft.llama_drafter import LlamaDrafter
from proxy.tokenizer import Tokenizer
from verifier.core.chat_template import ChatTemplate
from verifier.core.gguf import load_llama
from verifier.core.grammar import GrammarCompiler, GrammarSpec
from verifier.core.models import default_target_dir, resolve_draft, target_gguf_path
from verifier.core.prompts import load_prompts

PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "bench.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--drafts", nargs="+", default=[None], metavar="GGUF",
                        help="draft models to compare (default: the edge's default draft)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tok = Tokenizer(target_gguf_path())
    template = ChatTemplate(tok.chat_template, tok.bos_text, tok.eos_text)
    model = AutoModelForCausalLM.from_pretrained(default_target_dir(), dtype=torch.float32).eval()
    drafters = [(resolve_draft(d), LlamaDrafter(load_llama(str(resolve_draft(d)), 4096, 1))) for d in args.drafts]
    grammars = GrammarCompiler(tok.grammar_tokenizer)
    spec = GrammarSpec.json_schema({"type": "object"}, sorted(tok.stop_token_ids))
    print("| draft | output | positions | draft agrees (masked) | draft agrees (unmasked) |")
    print("|---|---|---|---|---|")
    for json_mode in (False, True):
        masked = {path: 0 for path, _ in drafters}
        unmasked = dict(masked)
        total = 0
        for prompt in load_prompts(PROMPTS)[: args.limit]:
            ids = tok.encode(template.render(prompt.messages), special=True)
            target_c = grammars.compile(spec) if json_mode else None
            out: list[int] = []
            for _ in range(args.max_tokens):
                with torch.inference_mode():
                    logits = model(torch.tensor([ids + out])).logits[0, -1].numpy()
                allowed = target_c.allowed(out) if target_c is not None else None  # the edge masks the same way
                if allowed is not None:
                    logits = np.where(allowed[: logits.size], logits, -np.inf)
                token = int(np.argmax(logits))
                for path, drafter in drafters:
                    raw = drafter.sync(ids + out)
                    draft = np.where(allowed[: raw.size], raw, -np.inf) if allowed is not None else raw
                    masked[path] += int(np.argmax(draft) == token)
                    unmasked[path] += int(np.argmax(raw) == token)
                total += 1
                out.append(token)
                if token in tok.stop_token_ids:
                    break
        name = "json_object" if json_mode else "plain"
        for path, _ in drafters:
            print(f"| {path.name} | {name} | {total} | {masked[path] / total:.3f} | {unmasked[path] / total:.3f} |")
    drafts = f" --drafts {' '.join(args.drafts)}" if args.drafts != [None] else ""
    print(f"\nreproduce: .venv/bin/python -m clients.bench.agreement --limit {args.limit} "
          f"--max-tokens {args.max_tokens}{drafts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
