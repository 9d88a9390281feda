"""vLLM engine arguments: the operator's (``--vllm-engine-args``) merged with Tandem's.

Any field of vLLM's ``AsyncEngineArgs`` passes through (parallel layout, quantization, KV-cache
dtype, CUDA graphs, chunked prefill, ...); vLLM itself validates them (``validate_engine_args``),
so this module keeps no copy of vLLM's list. It knows only two sets of names: the engine
arguments that are also Tandem settings (given both ways, they must agree) and the ones Tandem's
routes set themselves (refused, with the reason). vLLM is imported only where the engine is
asked (device, validation, its config objects).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from verifier.core.protocol import EngineLayout

#: engine arguments that are also Tandem settings: the setting's flag
SETTING_FLAGS: Mapping[str, str] = {
    "dtype": "--dtype",
    "max_model_len": "--max-context",
    "block_size": "--vllm-block-size",
    "enforce_eager": "--vllm-enforce-eager",
    "gpu_memory_utilization": "--vllm-gpu-memory-utilization",
    "max_num_seqs": "--vllm-max-num-seqs",
}

#: engine arguments Tandem sets itself: why an operator cannot
TANDEM_OWNS: Mapping[str, str] = {
    "model": "the target is --model",
    "scheduler_cls": "the live route's scheduler runs the edge's drafts (--vllm-live-slots 0 turns the route off)",
    "speculative_config": "the edge's drafts are the speculation: the live route sets vLLM's speculative config",
    "max_logprobs": "whole-row rounds read every token's log-probability (-1)",
    "skip_tokenizer_init": "grammars of cloud-only decoding need the tokenizer",
    "structured_outputs_config": "grammars follow Tandem's own engine (llguidance), so cloud-only and speculative "
                                 "output agree",
}

#: vLLM reads its CPU threads' binding from this variable: one core list per local rank, '|' between them
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


class EngineArgsError(ValueError):
    """A bad engine argument; the message names it and says what to do."""


@dataclass(frozen=True)
class TandemArgs:
    """The engine arguments Tandem's settings give: ``given`` those the operator set (flag or
    environment), ``defaults`` the rest (Tandem's defaults for this device)."""

    given: Mapping[str, Any]
    defaults: Mapping[str, Any]


def read_engine_args(text: str | None) -> dict[str, Any]:
    """``--vllm-engine-args``: a JSON object, or the path of a YAML or JSON file holding one."""
    if text is None or not text.strip():
        return {}
    source = text.strip()
    if source.startswith("{"):
        try:
            loaded = json.loads(source)
        except json.JSONDecodeError as exc:
            raise EngineArgsError(f"--vllm-engine-args is not a JSON object: {exc}") from exc
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise EngineArgsError(f"--vllm-engine-args: {source!r} is neither a JSON object nor a file")
        try:
            loaded = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise EngineArgsError(f"--vllm-engine-args: {path} is not YAML or JSON: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise EngineArgsError("--vllm-engine-args must be an object of engine argument names to values, "
                              f"got {type(loaded).__name__}")
    return {key.replace("-", "_"): value for key, value in loaded.items()}


def merge_engine_args(tandem: TandemArgs, operator: Mapping[str, Any], route: Mapping[str, Any]) -> dict[str, Any]:
    """Tandem's defaults, then its given settings, then the operator's engine arguments, then
    the route's own; an operator's argument that Tandem owns, or that contradicts a given
    setting, is an ``EngineArgsError``."""
    for key in sorted(operator):
        if key in TANDEM_OWNS or key in route:
            why = TANDEM_OWNS.get(key, "its route needs it")
            raise EngineArgsError(f"engine argument {key} is set by Tandem: {why}")
        if key in tandem.given and tandem.given[key] != operator[key]:
            raise EngineArgsError(
                f"engine argument {key}={operator[key]!r} contradicts {SETTING_FLAGS[key]} "
                f"({key}={tandem.given[key]!r}): give one of them")
    return {**tandem.defaults, **tandem.given, **operator, **route}


def local_world_size(args: Mapping[str, Any]) -> int:
    """The workers one node runs: tensor x pipeline parallel over the nodes (data parallel apart)."""
    world = int(args.get("tensor_parallel_size", 1)) * int(args.get("pipeline_parallel_size", 1))
    nodes = int(args.get("nnodes", 1))
    return max(1, world // max(1, nodes))


def cpu_binding(cpus: Sequence[int], ranks: int) -> str:
    """vLLM's CPU thread binding for ``ranks`` workers: the usable cores cut into equal runs
    (vLLM's own 'auto' binds one NUMA node per rank, and fails on a one-node machine)."""
    if ranks < 1:
        raise ValueError("ranks must be positive")
    ordered = sorted(cpus)
    if len(ordered) < ranks:
        raise EngineArgsError(f"{ranks} CPU workers need {ranks} cores at least; {len(ordered)} usable "
                              f"(set {CPU_BIND_ENV} yourself to share cores)")
    share = len(ordered) // ranks
    runs = [ordered[i * share:(i + 1) * share] for i in range(ranks)]
    return "|".join(",".join(str(c) for c in run) for run in runs)


def validate_engine_args(args: Mapping[str, Any], headless: bool = False) -> Any:
    """vLLM's own check: ``AsyncEngineArgs(**args)`` and its engine config (reads the model's
    config, loads no weights). Returns the ``VllmConfig``; vLLM's message in an ``EngineArgsError``."""
    from pydantic import ValidationError
    from vllm.engine.arg_utils import AsyncEngineArgs

    try:
        engine_args = AsyncEngineArgs(**args)
    except TypeError as exc:  # an unknown name: vLLM's dataclass says which
        raise EngineArgsError(f"vLLM refuses the engine arguments: {one_line(str(exc))}") from exc
    try:
        return engine_args.create_engine_config(headless=headless)
    except ValidationError as exc:  # a config's validator: its messages, not pydantic's dump of the input
        reasons = "; ".join(located(error["loc"], str(error["msg"]).removeprefix("Value error, "))
                            for error in exc.errors())
        raise EngineArgsError(f"vLLM refuses the engine arguments: {one_line(reasons)}") from exc
    except (ValueError, TypeError, AssertionError) as exc:
        raise EngineArgsError(f"vLLM refuses the engine arguments: {one_line(str(exc))}") from exc


def located(loc: Sequence[int | str], message: str) -> str:
    """A validation message with the field it is about (pydantic's ``loc``), where it names one."""
    names = [str(part) for part in loc if isinstance(part, str)]
    return f"{'.'.join(names)}: {message}" if names else message


def one_line(text: str) -> str:
    return " ".join(text.split()) or "no reason given"


#: the live route's proposer, by the dotted name vLLM loads it by (inside its worker)
LIVE_PROPOSER = "verifier.backends.vllm_live.NoDrafts"


def live_engine_args(slots: int, proposer: str = LIVE_PROPOSER) -> dict[str, Any]:
    """vLLM engine arguments that turn the live route on (``slots`` drafts a step; 0: off)."""
    if not slots:
        return {}
    return {"scheduler_cls": "verifier.backends.vllm_live.LiveRouteScheduler",
            "speculative_config": {"method": "custom_class", "model": proposer, "num_speculative_tokens": slots}}


def live_margin_of(slots: int) -> int:
    """Context the live route keeps beyond a session's tokens: a round's spec slots and the token after them."""
    return slots + 2 if slots else 0


def vllm_engine_args(model_path: Path, *, dtype: str = "float32", max_context: int | None = None,
                     block_size: int = 32, enforce_eager: bool | None = None, gpu_memory_utilization: float = 0.9,
                     seed: int = 0, live_slots: int = 8, max_num_seqs: int = 64,
                     operator: Mapping[str, Any] | None = None, given: Collection[str] = ()) -> dict[str, Any]:
    """The vLLM backend's engine arguments: Tandem's settings (``given``: the engine names of
    those the operator set), the operator's ``--vllm-engine-args``, and what Tandem's routes
    need. Device defaults: eager on CPU (vLLM's CPU backend needs it), CUDA graphs on a GPU."""
    from vllm.config import StructuredOutputsConfig

    own: dict[str, Any] = {
        "dtype": dtype,
        "max_model_len": max_context + live_margin_of(live_slots) if max_context else None,
        "block_size": block_size,
        "enforce_eager": on_cpu() if enforce_eager is None else enforce_eager,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_num_seqs": max_num_seqs,
    }
    tandem = TandemArgs(given={k: v for k, v in own.items() if k in given},
                        defaults={**{k: v for k, v in own.items() if k not in given},
                                  "seed": seed, "enable_prefix_caching": True, "disable_log_stats": True})
    route: dict[str, Any] = {
        "model": str(model_path),
        # the tokenizer only for structured outputs (grammars of cloud-only decoding, with llguidance like
        # Tandem's own); every request passes token ids and asks for no detokenisation
        "skip_tokenizer_init": False,
        "structured_outputs_config": StructuredOutputsConfig(backend="guidance"),
        "max_logprobs": -1,  # whole rows: the whole vocabulary's log-probabilities of a position
        **live_engine_args(live_slots),
    }
    merged = merge_engine_args(tandem, operator or {}, route)
    if int(merged.get("pipeline_parallel_size", 1)) > 1 and on_cpu():
        raise EngineArgsError("pipeline_parallel_size > 1 fails on vLLM 0.32's CPU backend by itself (its engine dies "
                              "at the first step, also with vLLM's own LLM class; docs/deploy.md): use "
                              "tensor_parallel_size on CPU")
    return merged


def on_cpu() -> bool:
    """Whether vLLM runs on CPU here (``vllm-cpu``)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def bind_cpu_workers(args: Mapping[str, Any]) -> None:
    """On CPU with several workers on this node, bind each to its share of the usable cores
    (unless the operator set ``VLLM_CPU_OMP_THREADS_BIND``)."""
    ranks = local_world_size(args)
    if ranks > 1 and CPU_BIND_ENV not in os.environ and on_cpu():
        os.environ[CPU_BIND_ENV] = cpu_binding(sorted(os.sched_getaffinity(0)), ranks)


def engine_layout(vllm_config: Any, operator: Mapping[str, Any]) -> EngineLayout:
    """What ``/v1/info`` and ``/metrics`` report of a started engine: its parallel layout, the
    engine settings that shape it, and the operator's engine arguments as given."""
    parallel, cache, model = vllm_config.parallel_config, vllm_config.cache_config, vllm_config.model_config
    executor = parallel.distributed_executor_backend
    return EngineLayout(
        tensor_parallel_size=int(parallel.tensor_parallel_size),
        pipeline_parallel_size=int(parallel.pipeline_parallel_size),
        data_parallel_size=int(parallel.data_parallel_size),
        nodes=int(getattr(parallel, "nnodes", 1)),
        executor=executor if isinstance(executor, str) or executor is None else getattr(executor, "__name__", None),
        dtype=str(model.dtype).removeprefix("torch."),
        quantization=model.quantization,
        kv_cache_dtype=str(cache.cache_dtype),
        block_size=int(cache.block_size),
        max_model_len=int(model.max_model_len),
        max_num_seqs=int(vllm_config.scheduler_config.max_num_seqs),
        enforce_eager=bool(model.enforce_eager),
        engine_args=json.loads(json.dumps(dict(operator), default=str)),
    )
