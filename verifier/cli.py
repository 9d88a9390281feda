"""`tandem-verifier`: start the cloud verifier."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from verifier.backends import BackendOptions, TargetBackend, check_backend, load_backend, run_worker_node
from verifier.backends.vllm_args import read_engine_args
from verifier.core.asgi import KeyRing
from verifier.core.envsettings import load_settings
from verifier.core.grammar import GrammarCompiler
from verifier.core.lifetime import exit_with_parent
from verifier.core.logs import configure_logging
from verifier.core.models import default_target_dir
from verifier.engine import SchedulingConfig
from verifier.settings import VerifierSettings


def main(argv: list[str] | None = None) -> None:
    exit_with_parent()  # started by a test run or `make run`: never outlive it
    settings = load_settings(VerifierSettings, "tandem-verifier", argv)  # a bad value: one line, no traceback
    configure_logging(settings.log_level)
    model = settings.model or str(default_target_dir())

    try:
        options = backend_options(settings)
        if settings.vllm_headless:
            if settings.backend != "vllm":
                raise ValueError("--vllm-headless needs --backend vllm")
            run_worker_node(model, options)
            return
        check_backend(settings.backend, model, options)
    except ValueError as exc:  # a bad setting or engine argument: one line, no traceback
        sys.exit(f"tandem-verifier: {exc}")

    def factory() -> TargetBackend:
        return load_backend(settings.backend, model, options)

    from verifier.app import create_app

    scheduling = SchedulingConfig(
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_rounds=settings.max_batch_rounds,
        max_queue_delay_s=settings.max_queue_delay_s,
        prefill_chunk=settings.prefill_chunk,
        tpot_ms=settings.tpot_slo_ms,
        ttft_ms=settings.ttft_slo_ms,
        calibration_passes=settings.calibration_passes,
    )
    keys = KeyRing.load(key_file=settings.auth_tokens_file)
    tokenizer_file = Path(model) / "tokenizer.json"
    grammars = GrammarCompiler.of_tokenizer_file(tokenizer_file) if tokenizer_file.is_file() else None
    app = create_app(factory, settings.session_ttl_s, settings.max_sessions, scheduling, keys,
                     settings.max_body_bytes, settings.max_sessions_per_edge, settings.max_queued_rounds, grammars)
    # the channel's WebSockets through the sans-I/O websockets implementation (its legacy one is deprecated)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                ws="websockets-sansio", ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)


def backend_options(settings: VerifierSettings) -> BackendOptions:
    return BackendOptions(
        dtype=settings.dtype, device=settings.device, threads=settings.threads,
        max_context=settings.max_context, cpu_linear=settings.cpu_linear,
        varlen={"auto": None, "varlen": True, "per-item": False}[settings.torch_batching],
        vllm_block_size=settings.vllm_block_size, vllm_enforce_eager=settings.vllm_enforce_eager,
        vllm_gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        vllm_kv_cache_gib=settings.vllm_kv_cache_gib, vllm_live_slots=settings.vllm_live_slots,
        vllm_max_num_seqs=settings.vllm_max_num_seqs, vllm_engine_args=read_engine_args(settings.vllm_engine_args),
        vllm_given=settings.vllm_given(),
    )


if __name__ == "__main__":
    main()
