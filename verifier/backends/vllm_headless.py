"""A worker node of a multi-node vLLM layout: this node's share of the workers, no API.

vLLM's multiprocessing executor spans nodes (engine arguments ``nnodes``, ``node_rank``,
``master_addr``): the leader (node rank 0) is the verifier, which serves the API and holds the
engine; every other node runs ``tandem-verifier --vllm-headless`` with the same settings and
engine arguments, so its workers build the same engine config (the live route's scheduler and
proposer included), as ``vllm serve --headless`` does for vLLM's own server. Uses vLLM's
``MultiprocExecutor`` the way ``vllm.entrypoints.cli.serve.run_headless`` does (0.32.0).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from verifier.backends.vllm_args import EngineArgsError, bind_cpu_workers, validate_engine_args, vllm_engine_args

if TYPE_CHECKING:
    from verifier.backends import BackendOptions

log = logging.getLogger(__name__)


def run_worker_node(model_path: Path, options: BackendOptions) -> None:
    """Run this node's vLLM workers until they end or the process is told to stop."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.vllm_kv_cache_gib))
    kwargs = options.vllm_kwargs()
    args = vllm_engine_args(model_path, **kwargs)
    nodes, rank = int(args.get("nnodes", 1)), int(args.get("node_rank", 0))
    if nodes < 2 or not 1 <= rank < nodes:
        raise EngineArgsError(f"--vllm-headless runs a worker node: its engine arguments need nnodes > 1 and "
                              f"0 < node_rank < nnodes (got nnodes={nodes}, node_rank={rank}); node 0 is the verifier")
    bind_cpu_workers(args)
    config = validate_engine_args(args, headless=True)
    from vllm.v1.executor.multiproc_executor import MultiprocExecutor

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parallel = config.parallel_config
    log.info("vllm worker node", extra={"node_rank": rank, "nodes": nodes,
                                        "head": f"{parallel.master_addr}:{parallel.master_port}"})
    executor = MultiprocExecutor(config, monitor_workers=False)
    try:
        executor.start_worker_monitor(inline=True)
    finally:
        executor.shutdown()
