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

from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from verifier.backends.vllm_kernels import TOP_P_SITES, install_kernel_fixes
from verifier.backends.vllm_sessions import DRAFTS, LIVE


def check_internals() -> None:
    """Raise RuntimeError naming what is missing when the installed vLLM lacks the internals this
    route relies on (read in vLLM 0.32.0; not a public API)."""
    import importlib  # noqa: PLC0415
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
    missing += [f"{site}.apply_top_k_top_p" for site in TOP_P_SITES
                if not hasattr(importlib.import_module(site), "apply_top_k_top_p")]
    if missing:
        raise RuntimeError(f"vLLM {vllm.__version__} lacks what the live route needs ({', '.join(missing)}); "
                           "it was written against vLLM 0.32.0")


def _extra(request: Request) -> dict[str, Any]:
    params = request.sampling_params
    return dict(params.extra_args or {}) if params is not None else {}


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
