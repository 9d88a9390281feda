"""`tandem-edge`: start the OpenAI-compatible edge server."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from proxy.app import create_app
from proxy.cloud.auth import client_tls
from proxy.cloud.channel import VerifierChannel, websocket_connector
from proxy.cloud.client import VerifierClient
from proxy.draft.base import Drafter
from proxy.draft.llama_drafter import LlamaDrafter
from proxy.draft.ngram import NgramDrafter
from proxy.draft.pool import DrafterPool
from proxy.openai.errors import OpenAIError
from proxy.service import EdgeService
from proxy.settings import EdgeSettings
from proxy.tokenizer import Tokenizer
from verifier.core.asgi import KeyRing
from verifier.core.envsettings import load_settings
from verifier.core.gguf import llama_build_problem, load_llama
from verifier.core.lifetime import exit_with_parent
from verifier.core.logs import configure_logging
from verifier.core.models import resolve_draft

log = logging.getLogger(__name__)


def build_app(settings: EdgeSettings) -> FastAPI:
    draft_path = str(resolve_draft(settings.draft_model))

    async def factory() -> EdgeService:
        tokenizer = Tokenizer(draft_path)
        if settings.chat_template:
            tokenizer.chat_template = Path(settings.chat_template).read_text(encoding="utf-8")
        drafters: list[Drafter]
        if settings.drafter == "ngram":
            drafters = [NgramDrafter() for _ in range(settings.slots)]
        else:
            drafters = [LlamaDrafter(load_llama(draft_path, settings.n_ctx, settings.threads))
                        for _ in range(settings.slots)]
        tls = client_tls(settings.verifier_ca_bundle)
        client = VerifierClient(settings.verifier_url, settings.verifier_timeout_s, token=settings.verifier_token,
                                tls=tls)
        channel = VerifierChannel(websocket_connector(settings.verifier_url, settings.verifier_timeout_s,
                                                      token=settings.verifier_token, tls=tls))
        service = EdgeService(settings, tokenizer, DrafterPool(drafters, settings.max_waiting), client, channel)
        try:
            reachable = await service.verifier.check()
        except OpenAIError as exc:
            raise SystemExit(exc.message) from exc
        if not reachable:
            log.warning("verifier not reachable yet", extra={"url": settings.verifier_url})
        log.info("edge ready", extra={"draft_model": draft_path, "model": service.model_id})
        return service

    async def close(service: EdgeService) -> None:
        await service.channel.aclose()
        await service.client.aclose()
        if service.loops.round_log is not None:
            service.loops.round_log.close()

    keys = KeyRing.load(settings.api_key, settings.api_key_file)
    return create_app(factory, close, settings.max_body_bytes, keys, tuple(settings.cors_origins))


def main(argv: list[str] | None = None) -> None:
    exit_with_parent()  # started by a test run or `make run`: never outlive it
    settings = load_settings(EdgeSettings, "tandem-edge", argv)  # a bad value: one line, no traceback
    configure_logging(settings.log_level)
    problem = llama_build_problem()  # the tokenizer and the drafter run in llama.cpp: can it run on this CPU?
    if problem:
        raise SystemExit(f"tandem-edge cannot start: {problem}")
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False,
                ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)


if __name__ == "__main__":
    main()
