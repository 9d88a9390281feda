"""Which Linear kernels the torch backend picks (oneDNN on CPU float32, else torch's)."""

from __future__ import annotations

import pytest
import torch

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
