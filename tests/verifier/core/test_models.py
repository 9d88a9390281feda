"""Where the default model pair lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.core.models import default_target_dir, models_dir, resolve_draft, target_gguf_path


def test_draft_setting_resolves_to_the_distilled_draft_by_default(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(tmp_path))
    assert resolve_draft(None) == tmp_path / "smollm2-135m-draft.gguf"
    assert resolve_draft("target") == target_gguf_path()
    assert resolve_draft("some/draft.gguf") == Path("some/draft.gguf")


def test_models_dir_is_the_repository_models_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TANDEM_MODELS_DIR", raising=False)
    root = Path(__file__).resolve().parents[3]
    assert models_dir() == root / "models"
    assert default_target_dir().parent == root / "models"
