"""``check_backend``: the default backend (vLLM) missing is one clear line, before any model loads."""

from __future__ import annotations

import importlib.util

import pytest

from verifier.backends import BackendOptions, check_backend
from verifier.settings import VerifierSettings


def test_the_default_backend_is_vllm() -> None:
    assert VerifierSettings().backend == "vllm"  # the same as `make run`'s VERIFIER_BACKEND


def test_vllm_not_installed_names_the_install_and_the_other_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs vLLM: pip install '\.\[verifier,vllm\]'.*--backend torch"):
        check_backend("vllm", "/no/model", BackendOptions())


def test_engine_args_without_vllm_backend_are_refused() -> None:
    with pytest.raises(ValueError, match="--vllm-engine-args needs --backend vllm"):
        check_backend("torch", "/no/model", BackendOptions(vllm_engine_args={"seed": 1}))
