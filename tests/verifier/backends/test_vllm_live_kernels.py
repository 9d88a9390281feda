"""The live route's worker kernels: ``expand_to_tokens`` against hand-expanded values, and vLLM
0.32's CPU stand-in for the same kernel shown wrong (the reason for the fix); ``top_k_top_p``
masking exactly what vLLM's sorting top-k/top-p masks, on peaked and flat rows, with and
without top-k, through its fast path and through its fallback."""

from __future__ import annotations

import pytest
import torch

from verifier.backends.vllm_kernels import expand_to_tokens, top_k_top_p


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

    from verifier.backends.vllm_args import LIVE_PROPOSER
    from verifier.backends.vllm_live import NoDrafts

    module, name = LIVE_PROPOSER.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is NoDrafts


def _rows(seed: int) -> torch.Tensor:
    """Rows from peaked (the nucleus a few tokens) to flat (thousands), over a 4096-token vocabulary."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([12.0, 6.0, 3.0, 1.5, 0.5, 0.05]).repeat(4)
    return torch.randn(len(scales), 4096, generator=g) * scales.unsqueeze(1)


@pytest.mark.parametrize("with_k", [False, True])
@pytest.mark.parametrize("candidates", [256, 8])
def test_top_k_top_p_masks_what_vllms_sort_masks(with_k: bool, candidates: int) -> None:
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    for seed in range(3):
        logits = _rows(seed)
        n = logits.shape[0]
        p = torch.tensor([0.95, 0.8, 0.5, 1.0, 0.99, 0.3] * (n // 6), dtype=torch.float32)
        k = torch.tensor([50, 4096, 7, 1000, 3, 200] * (n // 6), dtype=torch.int64) if with_k else None
        want = apply_top_k_top_p_pytorch(logits.clone(), k.clone() if k is not None else None, p, allow_cpu_sync=True)
        got = top_k_top_p(logits.clone(), k.clone() if k is not None else None, p, candidates=candidates)
        assert torch.equal(torch.isfinite(got), torch.isfinite(want)), f"seed {seed}"
        assert torch.equal(got[torch.isfinite(got)], logits[torch.isfinite(want)])  # kept logits unchanged


def test_top_k_top_p_needs_its_fallback_for_a_nucleus_past_the_candidates() -> None:
    """The planted-bug twin: the fast path alone (a mask cut at the candidates) differs from vLLM
    on the flat rows, which is why those rows go to vLLM's sort."""
    logits = _rows(0)
    p = torch.full((logits.shape[0],), 0.95)
    probs = logits.softmax(dim=-1)
    cut = probs.topk(8, dim=-1).values[:, -1:]
    fast_only = torch.isfinite(logits.masked_fill(probs < cut, float("-inf")))
    assert not torch.equal(fast_only, torch.isfinite(top_k_top_p(logits.clone(), None, p, candidates=8)))


def test_top_k_alone_is_vllms_own() -> None:
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_only

    logits = _rows(1)
    k = torch.full((logits.shape[0],), 5, dtype=torch.int64)
    want = apply_top_k_only(logits.clone(), k.clone())
    assert torch.equal(top_k_top_p(logits.clone(), k, None), want)
