"""The live vLLM route (issue 25, a prototype): one vLLM request per edge session, each round's
drafts verified inside it by vLLM's own speculative decoding, at about one decode step.

vLLM loads these two classes by name inside its engine process (docs/vllm-live-route.md):

- ``NoDrafts``, the proposer of ``speculative_config={"method": "custom_class", ...}``: it
  proposes nothing; it only turns vLLM's spec-decode machinery on (spec slots, the rejection
  sampler, the roll-back of rejected drafts);
- ``LiveRouteScheduler`` (``scheduler_cls``): a session is a streaming-input request; each
  round is one chunk of one token (the previous round's last token) whose
  ``SamplingParams.extra_args`` carry the edge's drafts. vLLM reserves K placeholder spec slots
  for such a chunk; the scheduler puts the drafts there (and drops the slots it has no draft
  for), and ends the chunk after its one step, so the session pauses with its KV kept.

A round's output is the accepted drafts and one token vLLM sampled itself (the correction or the
bonus). Not a public vLLM API: ``check_internals`` fails at start-up when the pinned vLLM's
internals are not as read.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from verifier.backends.vllm_sessions import DRAFTS, LIVE


def check_internals() -> None:
    """Raise RuntimeError naming what is missing when the installed vLLM lacks the internals this
    route relies on (read in vLLM 0.32.0; not a public API)."""
    import inspect  # noqa: PLC0415

    import vllm  # noqa: PLC0415
    from vllm.engine.protocol import StreamingInput  # noqa: PLC0415, F401 - streaming-input sessions
    from vllm.v1.core.sched.output import SchedulerOutput  # noqa: PLC0415

    missing = [name for name in ("schedule", "_update_request_with_output") if not hasattr(Scheduler, name)]
    fields = inspect.signature(SchedulerOutput).parameters
    missing += [f"SchedulerOutput.{f}" for f in ("scheduled_spec_decode_tokens", "num_scheduled_tokens",
                                                  "total_num_scheduled_tokens") if f not in fields]
    request_init = inspect.signature(Request).parameters
    missing += [] if "resumable" in request_init else ["Request(resumable=...)"]
    if not hasattr(RequestStatus, "WAITING_FOR_STREAMING_REQ"):
        missing.append("RequestStatus.WAITING_FOR_STREAMING_REQ")
    if missing:
        raise RuntimeError(f"vLLM {vllm.__version__} lacks what the live route needs ({', '.join(missing)}); "
                           "it was written against vLLM 0.32.0")


def _extra(request: Request) -> dict[str, Any]:
    params = request.sampling_params
    return dict(params.extra_args or {}) if params is not None else {}


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


def install_kernel_fixes() -> None:
    """Put ``expand_to_tokens`` in place of vLLM's CPU stand-in for ``expand_kernel``, in this
    (worker) process; nothing changes where Triton runs the kernel itself."""
    from vllm.platforms import current_platform  # noqa: PLC0415
    from vllm.triton_utils import HAS_TRITON  # noqa: PLC0415
    from vllm.triton_utils.dispatcher import register_kernels  # noqa: PLC0415

    if current_platform.is_cpu() and not HAS_TRITON:
        register_kernels({"vllm.v1.sample.rejection_sampler.expand_kernel": expand_to_tokens})


class NoDrafts:
    """A proposer that proposes nothing: the drafts come from the edge. vLLM builds it inside each
    worker, which makes its constructor the place for the worker's kernel fixes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        install_kernel_fixes()

    def load_model(self, *args: Any, **kwargs: Any) -> None:  # the CPU model runner calls it
        pass

    def propose(self, sampled_token_ids: list[list[int]], *args: Any, **kwargs: Any) -> list[list[int]]:
        return [[] for _ in sampled_token_ids]


class LiveRouteScheduler(Scheduler):
    """vLLM's scheduler, with a live round's drafts in its spec slots and its chunk ended after
    one step."""

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        out = super().schedule(*args, **kwargs)
        for rid, spec in list(out.scheduled_spec_decode_tokens.items()):
            if not spec or any(t != -1 for t in spec):
                continue  # real spec tokens (none here: NoDrafts proposes nothing)
            request = self.requests[rid]
            extra = _extra(request)
            drafts = [int(t) for t in (extra.get(DRAFTS) or ())][:len(spec)] if extra.get(LIVE) else []
            if drafts:
                out.scheduled_spec_decode_tokens[rid] = drafts
            else:
                del out.scheduled_spec_decode_tokens[rid]
            unused = len(spec) - len(drafts)
            if unused:  # the placeholder slots were counted as scheduled: take them back
                out.num_scheduled_tokens[rid] -= unused
                out.total_num_scheduled_tokens -= unused
                request.num_computed_tokens -= unused
                if hasattr(request, "num_in_flight_tokens"):
                    request.num_in_flight_tokens -= unused
        return out

    def _update_request_with_output(self, request: Request, new_token_ids: list[int], *args: Any,
                                    **kwargs: Any) -> tuple[list[int], bool]:
        new_token_ids, stopped = super()._update_request_with_output(request, new_token_ids, *args, **kwargs)
        if not stopped and new_token_ids and getattr(request, "resumable", False) and _extra(request).get(LIVE):
            request.status = RequestStatus.FINISHED_LENGTH_CAPPED  # one step a chunk, then the session pauses
            stopped = True
        return new_token_ids, stopped
