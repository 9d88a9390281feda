"""One side decodes alone: the target in the cloud (``cloud_loop``) or the draft model on the
edge (``draft_loop``). Each yields lists of newly committed token ids, like every loop of
``proxy.decoding``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

from proxy.cloud.errors import VerifierUnavailable
from proxy.decoding.context import LoopContext
from proxy.decoding.request import GenerationRequest, GenerationStats
from proxy.draft.base import Drafter


async def cloud_loop(req: GenerationRequest, ctx: LoopContext, stats: GenerationStats
                     ) -> AsyncGenerator[list[int], None]:
    """Cloud-only: the target decodes alone in the cloud (``ctx.client``) and streams token ids.
    Its step times (after the first token, which includes the prefill) feed the link estimates."""
    client, estimates, clock = ctx.client, ctx.estimates, ctx.clock
    up0, down0 = client.bytes_up - stats.bytes_up, client.bytes_down - stats.bytes_down  # counts add up
    t0 = clock() - stats.verify_wait_s
    first = True
    # closed with the loop: a request that turns away mid-stream ends the verifier's decoding at once
    stream = client.generate(req.generation, req.max_tokens, sorted(req.stop_token_ids))
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            stats.rounds += 1
            stats.verify_compute_s += chunk.compute_ms / 1000
            stats.verify_wait_s = clock() - t0
            stats.bytes_up = client.bytes_up - up0
            stats.bytes_down = client.bytes_down - down0
            if estimates is not None and not first and chunk.token_ids:
                estimates.observe_cloud_step(chunk.compute_ms / 1000 / len(chunk.token_ids))
            first = False
            if stats.logprobs is not None:
                if chunk.logprobs is None or len(chunk.logprobs) != len(chunk.token_ids):
                    raise VerifierUnavailable("the verifier sent tokens without the logprobs asked for")
                stats.record_logprobs([t.parsed() for t in chunk.logprobs])
            yield chunk.token_ids


async def draft_loop(
    req: GenerationRequest, drafter: Drafter, stats: GenerationStats
) -> AsyncGenerator[list[int], None]:
    """Edge-only: the draft model alone (fast, lower quality; also the offline fallback)."""
    dsampling = req.draft_sampling(1)
    context = list(req.generation.prompt_token_ids)
    for _ in range(req.max_tokens):
        t0 = time.perf_counter()
        token = await asyncio.to_thread(drafter.next_token, context, dsampling)
        stats.draft_s += time.perf_counter() - t0
        context.append(token)
        stats.record_logprobs([None])  # no target has seen it
        yield [token]
