from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import CliApp

from proxy.settings import EdgeSettings
from verifier.settings import VerifierSettings


def test_env_vars_configure_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_EDGE_DRAFT_MODEL", "/models/d.gguf")
    monkeypatch.setenv("TANDEM_EDGE_GAMMA", "6")
    monkeypatch.setenv("TANDEM_EDGE_VERIFIER_URL", "http://10.0.0.1:9")
    s = EdgeSettings()
    assert (s.draft_model, s.gamma, s.verifier_url) == ("/models/d.gguf", 6, "http://10.0.0.1:9")


def test_cli_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_VERIFIER_PORT", "9000")
    s = CliApp.run(VerifierSettings, cli_args=["--model", "/m", "--backend", "torch", "--session-ttl-s", "5"])
    assert (s.model, s.backend, s.session_ttl_s, s.port) == ("/m", "torch", 5.0, 9000)


def test_invalid_values_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        EdgeSettings(gamma=99)


def test_draft_setting_resolves_to_the_distilled_draft_by_default(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from verifier.models import resolve_draft, target_gguf_path

    monkeypatch.setenv("TANDEM_MODELS_DIR", str(tmp_path))
    assert resolve_draft(None) == tmp_path / "smollm2-135m-draft.gguf"
    assert resolve_draft("target") == target_gguf_path()
    assert resolve_draft("some/draft.gguf") == Path("some/draft.gguf")
