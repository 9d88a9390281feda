"""What the live route's vLLM worker runs in place of two of vLLM 0.32's CPU sampling kernels.

Both are installed by ``install_kernel_fixes`` inside each worker (``NoDrafts`` calls it), on
vLLM's CPU build only (where Triton is absent); nothing changes where Triton runs:

- ``expand_to_tokens``: vLLM's CPU stand-in for ``expand_kernel`` writes into a converted copy
  and leaves its output uninitialised, so sampled spec-decode steps read garbage temperatures
  (a correctness fix, docs/vllm-live-route.md);
- ``top_k_top_p``: vLLM's torch top-p sorts the whole vocabulary for every row, which on CPU
  costs one session's sampled live round a large part of a decode step, and several sessions'
  rounds more than a step. The same nucleus from the ``candidates`` likeliest tokens costs a
  small fraction of that; a row whose nucleus is larger goes to vLLM's sort (a speed fix; the
  measurements: docs/vllm-live-route.md, "Round and step, sampled rounds").
"""

from __future__ import annotations

import torch

#: vLLM's module attributes ``top_k_top_p`` replaces (each module looks the name up in its globals)
TOP_P_SITES = ("vllm.v1.sample.rejection_sampler", "vllm.v1.sample.ops.topk_topp_sampler")


def expand_to_tokens(output: torch.Tensor, input_val: torch.Tensor, cu_num_tokens: torch.Tensor,
                     replace_from: float, replace_to: float,
                     MAX_NUM_TOKENS: int | None = None) -> None:  # noqa: N803 - the kernel's own parameter name
    """vLLM's ``expand_kernel`` in plain torch: ``output`` gets each request's value (``replace_from``
    read as ``replace_to``) once per token of that request, in place.

    vLLM 0.32's CPU stand-in for this kernel converts ``output`` to int64 and writes into that copy,
    so for float inputs (the per-token temperature, top-p) and int32 ones (top-k) ``output`` keeps
    the uninitialised memory ``new_empty`` gave it: every sampled spec-decode step on CPU reads
    garbage temperatures (docs/vllm-live-route.md). Greedy steps never expand.
    """
    counts = torch.diff(cu_num_tokens.to(torch.int64), prepend=cu_num_tokens.new_zeros(1, dtype=torch.int64))
    values = torch.where(input_val == replace_from, torch.as_tensor(replace_to, dtype=input_val.dtype), input_val)
    output.copy_(torch.repeat_interleave(values, counts).to(output.dtype))


def top_k_top_p(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None,
                candidates: int = 256) -> torch.Tensor:
    """vLLM's top-k then top-p mask (``apply_top_k_top_p_pytorch``: -inf outside), in place, without
    sorting the vocabulary where the nucleus lies within the ``candidates`` likeliest tokens.

    vLLM's rule: a token is kept when the mass of the tokens below it, itself included, exceeds
    1 - p; that is, when the mass of the tokens above it is below p. So the nucleus is the
    likeliest n tokens, n = 1 + how many of the descending cumulative sums are below p. A row with
    p >= 1 keeps every token of positive probability (vLLM masks only zeros: the same draws). A row
    whose nucleus may reach past the candidates is masked by vLLM's own sort. Equal
    probabilities at the nucleus' edge are all kept (vLLM keeps those its sort puts first)."""
    from vllm.v1.sample.ops.topk_topp_sampler import (  # noqa: PLC0415
        apply_top_k_only,
        apply_top_k_top_p_pytorch,
    )

    if p is None:
        return apply_top_k_top_p_pytorch(logits, k, None, allow_cpu_sync=True)  # vLLM's top-k: no sort
    if k is not None:
        logits = apply_top_k_only(logits, k)
    probs = logits.softmax(dim=-1)
    top = probs.topk(min(candidates, probs.shape[-1]), dim=-1).values  # descending
    above = top.cumsum(dim=-1) - top  # the mass above each candidate
    p = p.to(probs.dtype).unsqueeze(1)
    keep = above < p
    whole = p[:, 0] >= 1
    inside = ~keep[:, -1] | whole | (top.shape[-1] == probs.shape[-1])
    edge = top.gather(1, (keep.sum(dim=-1, keepdim=True) - 1).clamp(min=0))
    edge = torch.where(whole.unsqueeze(1), torch.zeros_like(edge), edge)
    fast = inside.nonzero().squeeze(1)
    logits[fast] = logits[fast].masked_fill(probs[fast] < edge[fast], float("-inf"))
    slow = (~inside).nonzero().squeeze(1)
    if slow.numel():
        logits[slow] = apply_top_k_top_p_pytorch(logits[slow], None, p[slow, 0], allow_cpu_sync=True)
    return logits


def install_kernel_fixes() -> None:
    """Put ``expand_to_tokens`` in place of vLLM's CPU stand-in for ``expand_kernel`` (through vLLM's
    own kernel registry) and ``top_k_top_p`` in place of its torch top-k/top-p (in the modules of
    ``TOP_P_SITES``), in this (worker) process; nothing changes where Triton runs."""
    import importlib  # noqa: PLC0415

    from vllm.platforms import current_platform  # noqa: PLC0415
    from vllm.triton_utils import HAS_TRITON  # noqa: PLC0415
    from vllm.triton_utils.dispatcher import register_kernels  # noqa: PLC0415

    if current_platform.is_cpu() and not HAS_TRITON:
        register_kernels({"vllm.v1.sample.rejection_sampler.expand_kernel": expand_to_tokens})
        for site in TOP_P_SITES:
            setattr(importlib.import_module(site), "apply_top_k_top_p", top_k_top_p)  # noqa: B010
