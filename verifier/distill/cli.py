"""`tandem-draft`: distil a draft model for a target, and evaluate a draft.

  tandem-draft distill --target PATH --out DRAFT.gguf [--layers N --hidden D --tokens T --seed S]
  tandem-draft eval --target TARGET.gguf --draft DRAFT.gguf --prompts FILE [--json]

distill runs three resumable phases in a work directory (default: DRAFT.work/): the target
writes training text with top-k soft labels, the draft trains on them, the draft is
exported to GGUF. Re-running the same command after an interruption resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path


def _resolve_target(target: Path, target_gguf: Path | None, work: Path) -> tuple[Path, Path]:
    """(HF directory for torch, GGUF for tokenizer metadata)."""
    from verifier.core.models import target_gguf_path
    from verifier.prepare import convert_gguf_to_hf

    if target.suffix == ".gguf":
        hf = work / "target-hf"
        if not (hf / "config.json").exists():
            convert_gguf_to_hf(target, hf)
        return hf, target
    return target, target_gguf or target_gguf_path()


def cmd_distill(args: argparse.Namespace) -> None:
    import torch

    from verifier.distill.data import DataConfig
    from verifier.distill.data_llama import generate_data_llama
    from verifier.distill.data_torch import generate_data_torch
    from verifier.distill.export import export_gguf
    from verifier.distill.train import TrainConfig, train

    if args.gen_backend == "llama" and args.prompt_source == "list":
        raise SystemExit("--prompt-source list needs --gen-backend torch")
    if args.gen_backend == "llama" and args.response_format == "json":
        raise SystemExit("--response-format json needs --gen-backend torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir or args.out.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    target_dir, target_gguf = _resolve_target(args.target, args.target_gguf, work)
    print(f"[1/3] target writes {args.tokens} tokens of training text -> {work / 'data'}", file=sys.stderr)
    data_cfg = DataConfig(target_dir, work / "data", args.tokens, args.seed, batch_size=args.gen_batch,
                          max_new_tokens=args.gen_len, temperatures=tuple(args.gen_temperatures),
                          prompt_source=args.prompt_source, response_format=args.response_format)
    if args.gen_backend == "llama":
        generate_data_llama(data_cfg, target_gguf, args.gen_workers)
    else:
        generate_data_torch(data_cfg)
    print(f"[2/3] train a {args.layers}-layer draft for {args.epochs} epochs", file=sys.stderr)
    final = train(TrainConfig(target_dir, (work / "data", *args.mix_data), work / "train", args.layers, args.hidden,
                              args.seed, epochs=args.epochs, batch_tokens=args.batch_tokens,
                              checkpoint_every_s=args.checkpoint_every_s, lr=args.lr,
                              head_qtype=None if args.embed_type == "copy" else args.embed_type, init=args.init))
    state = torch.load(final, weights_only=False)
    print(f"[3/3] export GGUF -> {args.out}", file=sys.stderr)
    export_gguf(state["model"], state["config"], target_gguf, args.out,
                name=f"tandem-draft-{args.layers}l", weight_type=args.weight_type, embed_type=args.embed_type)
    print(f"draft written: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


def cmd_eval(args: argparse.Namespace) -> None:
    from verifier.core.models import target_gguf_path
    from verifier.distill.evaluate import evaluate, format_table

    report = evaluate(args.target or target_gguf_path(), args.draft, args.prompts, args.max_new, args.threads)
    print(json.dumps(asdict(report), indent=2) if args.json else format_table(report))


def cmd_fit_predictor(args: argparse.Namespace) -> None:
    """Fit the edge's rejection predictor on logged rounds; report held-out log loss against a
    predictor that knows only the base rate."""
    import numpy as np

    from verifier.core.predictor import AcceptancePredictor, fit_predictor, labelled_tokens, log_loss, read_rounds

    rounds = [r for path in args.round_log for r in read_rounds(path)]
    held = set(np.random.default_rng(args.seed).permutation(len(rounds))[: int(len(rounds) * args.holdout)].tolist())
    train_x, train_y = labelled_tokens([r for i, r in enumerate(rounds) if i not in held])
    test_x, test_y = labelled_tokens([r for i, r in enumerate(rounds) if i in held])
    model = fit_predictor(train_x, train_y)
    model.save(args.out)
    report = {"rounds": len(rounds), "train_tokens": int(train_y.size), "heldout_tokens": int(test_y.size),
              "weights": dict(zip(("confidence", "entropy", "margin"), model.weights, strict=True)),
              "bias": model.bias, "out": str(args.out)}
    if test_y.size:
        rate = float(np.clip(train_y.mean(), 1e-6, 1 - 1e-6))
        base = AcceptancePredictor((0.0, 0.0, 0.0), float(np.log(rate / (1 - rate))))
        report |= {"heldout_log_loss": round(log_loss(model, test_x, test_y), 4),
                   "heldout_log_loss_base_rate": round(log_loss(base, test_x, test_y), 4)}
    print(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tandem-draft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("distill", help="distil a draft from a target")
    d.add_argument("--target", type=Path, required=True, help="target: HF directory or GGUF")
    d.add_argument("--target-gguf", type=Path, default=None,
                   help="GGUF whose tokenizer metadata the draft copies (default: the SmolLM2 GGUF)")
    d.add_argument("--out", type=Path, required=True, help="draft GGUF to write")
    d.add_argument("--layers", type=int, default=5,
                   help="draft transformer layers (5 at width 576: 3.4x the target's decode speed)")
    d.add_argument("--hidden", type=int, default=None, help="draft width (default: the target's, init from it)")
    d.add_argument("--tokens", type=int, default=300_000, help="reply tokens the target writes for training")
    d.add_argument("--epochs", type=float, default=3.0, help="passes over the training text")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--weight-type", choices=["q4_1", "q5_1", "q8_0", "f16", "f32"], default="q8_0",
                   help="GGUF type of the layers' matrices (measured: q8_0 is both faster and more accurate "
                        "than q5_1 in llama.cpp here; q4_1 loses half the acceptance)")
    d.add_argument("--embed-type", choices=["copy", "q4_1", "q5_1", "q8_0", "f16", "f32"], default="q4_1",
                   help="GGUF type of the (tied) embeddings; copy = the target's bytes (needs frozen embeddings)")
    d.add_argument("--lr", type=float, default=6e-4, help="peak learning rate")
    d.add_argument("--batch-tokens", type=int, default=2048, help="padded tokens per optimiser step")
    d.add_argument("--gen-batch", type=int, default=96, help="prompts the target answers at once")
    d.add_argument("--gen-len", type=int, default=160, help="max reply tokens per prompt")
    d.add_argument("--gen-temperatures", type=float, nargs="+", default=[0.8, 0.0],
                   help="shard i is written at temperature T[i %% len(T)]; 0 = greedy")
    d.add_argument("--gen-backend", choices=["torch", "llama"], default="torch",
                   help="who writes the data: the HF target in torch (batched, bf16; the faster one here), or "
                        "the target GGUF in llama.cpp, one single-threaded worker per core (the GGUF must be "
                        "the target itself: --target X.gguf, or the default SmolLM2 pair)")
    d.add_argument("--prompt-source", choices=["templates", "self", "list"], default="templates",
                   help="templates: seeded combinations of tasks and subjects; self: the target writes the "
                        "user requests too, when asked for one (self-instruct); list: it writes them by continuing "
                        "a list begun with hand-written example requests (torch writer only)")
    d.add_argument("--response-format", choices=["text", "json"], default="text",
                   help="json: the target answers in JSON mode (its logits masked by the grammar of "
                        "response_format json_object, the soft labels masked too), for a draft that keeps "
                        "its acceptance on JSON-mode requests (torch writer only)")
    d.add_argument("--mix-data", type=Path, nargs="+", default=[],
                   help="more data directories (of earlier runs) to train on beside this run's own")
    d.add_argument("--init", type=Path, default=None,
                   help="start from the weights of an earlier run (its train/student-final.pt) or of a draft GGUF "
                        "(e.g. the shipped default draft; same layers and width) instead of the target's first "
                        "layers")
    d.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1, help="llama.cpp data workers")
    d.add_argument("--threads", type=int, default=None, help="torch threads")
    d.add_argument("--work-dir", type=Path, default=None, help="checkpoints and data (default: OUT.work/)")
    d.add_argument("--checkpoint-every-s", type=float, default=300.0)
    d.set_defaults(func=cmd_distill)
    e = sub.add_parser("eval", help="measure a draft against a target")
    e.add_argument("--target", type=Path, default=None, help="target GGUF (default: the SmolLM2 GGUF)")
    e.add_argument("--draft", type=Path, required=True)
    e.add_argument("--prompts", type=Path, required=True, help="JSONL (messages or prompt) or text lines")
    e.add_argument("--max-new", type=int, default=64, help="target continuation length per prompt")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=cmd_eval)
    f = sub.add_parser("fit-predictor", help="fit the edge's rejection predictor on logged rounds")
    f.add_argument("--round-log", type=Path, nargs="+", required=True, help="JSONL files of an edge's --round-log")
    f.add_argument("--out", type=Path, required=True, help="predictor JSON for the edge's --predictor")
    f.add_argument("--holdout", type=float, default=0.2, help="share of rounds held out to report the fit")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=cmd_fit_predictor)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
