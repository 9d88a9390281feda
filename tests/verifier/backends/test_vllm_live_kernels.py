"""The worker's kernel fix of the live route: ``expand_to_tokens`` against hand-expanded values,
and vLLM 0.32's CPU stand-in for the same kernel shown wrong (the reason for the fix)."""

from __future__ import annotations

import pytest
import torch

from verifier.backends.vllm_live import expand_to_tokens


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.int64])
def test_each_request_value_is_repeated_once_per_token_with_the_replacement(dtype: torch.dtype) -> None:
    values = torch.tensor([0.5, -1, 3], dtype=torch.float32).to(dtype)  # -1: vLLM's greedy temperature
    cu = torch.tensor([2, 2, 5], dtype=torch.int32)  # the second request has no drafts
    out = torch.full((5,), 99, dtype=dtype)
    expand_to_tokens(out, values, cu, -1, 1)
    want = [0.5, 0.5, 3, 3, 3] if dtype.is_floating_point else [0, 0, 3, 3, 3]
    assert out.tolist() == want


def test_vllms_cpu_stand_in_leaves_a_float_output_unwritten() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("vLLM's CPU stand-in exists on its CPU build only (elsewhere Triton runs the kernel)")
    from vllm.utils import cpu_triton_utils

    current_platform.import_kernels()
    out = torch.full((3,), 7.0)
    cpu_triton_utils._expand_kernel_impl(out, torch.tensor([0.8, 0.5]), torch.tensor([1, 3]), -1, 1)
    assert out.tolist() == [7.0, 7.0, 7.0], "vLLM fixed its CPU expand kernel: install_kernel_fixes may go"


def test_the_live_proposers_dotted_name_is_the_proposer() -> None:
    import importlib

    from verifier.backends.vllm_backend import LIVE_PROPOSER
    from verifier.backends.vllm_live import NoDrafts

    module, name = LIVE_PROPOSER.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is NoDrafts
