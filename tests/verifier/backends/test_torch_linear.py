"""How the torch backend uses the CPU: which Linear kernels, how many threads."""

from __future__ import annotations

import pytest
import torch

from verifier.backends import torch_backend
from verifier.backends.torch_backend import use_onednn_linear

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_uses_onednn_only_on_cpu_float32() -> None:
    assert use_onednn_linear("auto", CPU, "float32") == torch.backends.mkldnn.is_available()
    assert not use_onednn_linear("auto", CPU, "bfloat16")
    assert not use_onednn_linear("auto", CUDA, "float32")
    assert not use_onednn_linear("torch", CPU, "float32")


def test_onednn_where_it_cannot_apply_is_an_error() -> None:
    with pytest.raises(ValueError, match="onednn"):
        use_onednn_linear("onednn", CUDA, "float32")
    with pytest.raises(ValueError, match="cpu_linear"):
        use_onednn_linear("mkl", CPU, "float32")



@pytest.mark.parametrize(("cores", "threads"), [({0}, 1), ({0, 1}, 1), (set(range(8)), 7)])
def test_default_threads_leave_one_core_to_the_server(
    monkeypatch: pytest.MonkeyPatch, cores: set[int], threads: int
) -> None:
    monkeypatch.setattr(torch_backend.os, "sched_getaffinity", lambda _pid: cores)
    assert torch_backend.default_threads() == threads
