"""The frontend half of the live vLLM route: one edge session as one streaming-input vLLM request.

``LiveStream`` runs on the loop of vLLM's ``AsyncLLM``. ``open`` sends every prompt token but the
last (vLLM prefills them, prefix cache included); each ``round`` sends one chunk: the last
committed token, with the edge's drafts in ``SamplingParams.extra_args``, which
``verifier.backends.vllm_live.LiveRouteScheduler`` puts into the request's spec slots; the chunk
ends after its one step and the request pauses with its KV kept. ``close`` ends the request, and
vLLM frees its KV.

A chunk's output is the drafts vLLM accepted and one token it sampled itself. Where vLLM ran the
step without the drafts (a step that could not give the chunk its spec slots, or a round longer
than the slots), that token is a fresh sample of the target at the first unverified position;
``round`` then applies the compare rule: a sample equal to the next draft accepts it (rejection
sampling with the draft's probability taken as 1, exact for any draft) and the next chunk goes on
from there. Chunks ask vLLM to ignore EOS (a stop inside accepted drafts would miscount vLLM's
computed tokens): the edge decides where the output ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

LIVE = "tandem_live"  # SamplingParams.extra_args key: this chunk is a live round
DRAFTS = "tandem_drafts"  # SamplingParams.extra_args key: the round's draft token ids


@dataclass(frozen=True)
class LiveSampling:
    """What a live session's chunks sample with: vLLM decides acceptance under these."""

    temperature: float
    top_p: float
    top_k: int  # 0: off


def live_params(sampling: LiveSampling, slots: int, drafts: Sequence[int]) -> Any:
    """The ``SamplingParams`` of one live chunk carrying ``drafts`` (at most ``slots``)."""
    from vllm import SamplingParams  # noqa: PLC0415
    from vllm.sampling_params import RequestOutputKind  # noqa: PLC0415

    return SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or -1,
                          max_tokens=slots + 1, ignore_eos=True, detokenize=False,
                          output_kind=RequestOutputKind.DELTA, extra_args={LIVE: 1, DRAFTS: list(drafts)})


class LiveStream:
    """One live session (construct, ``open``, rounds, ``close``; all on vLLM's loop).

    Rounds and the close of one stream are serialised by a lock: a close that arrives while a
    round is in flight waits for that round's chunk, then ends the request."""

    def __init__(self, engine: Any, request_id: str, sampling: LiveSampling, slots: int) -> None:
        self._engine = engine
        self._sampling = sampling
        self._slots = slots
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._stream: AsyncIterator[Any] | None = None
        self.request_id = request_id
        self.closed = False
        self.chunks = 0  # chunks sent after the prefill (a round takes more than one when vLLM ran it without drafts)

    async def _inputs(self) -> AsyncIterator[Any]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    async def _send(self, tokens: list[int], drafts: Sequence[int]) -> list[int]:
        from vllm.engine.protocol import StreamingInput  # noqa: PLC0415
        from vllm.inputs import TokensPrompt  # noqa: PLC0415

        params = live_params(self._sampling, self._slots, drafts)
        await self._queue.put(StreamingInput(TokensPrompt(prompt_token_ids=tokens), params))
        if self._stream is None:
            self._stream = self._engine.generate(self._inputs(), params, self.request_id)
        out = await anext(self._stream)
        return list(out.outputs[0].token_ids)

    async def open(self, prompt_token_ids: Sequence[int]) -> None:
        """Prefill every prompt token but the last (the first round sends it)."""
        if len(prompt_token_ids) < 2:
            raise ValueError("a live session needs a prompt of two tokens at least")
        async with self._lock:
            await self._send(list(prompt_token_ids[:-1]), [])  # the prefill's own sample: the first round redraws it

    async def round(self, last_token: int, drafts: Sequence[int]) -> list[int]:
        """The tokens this round commits: the accepted drafts, then one token of the target's."""
        async with self._lock:
            if self.closed:
                raise RuntimeError(f"live session {self.request_id} is closed")
            committed: list[int] = []
            pending, rest = last_token, list(drafts)
            while True:
                got = await self._send([pending], rest[:self._slots])
                self.chunks += 1
                if not got:
                    raise RuntimeError("vLLM returned no token for a live round")
                committed += got
                accepted = len(got) - 1
                if accepted < len(rest) and got[-1] == rest[accepted]:  # a fresh sample equal to the next draft
                    rest, pending = rest[accepted + 1:], got[-1]
                    continue
                return committed

    async def close(self) -> None:
        """End the request (vLLM frees its KV); idempotent."""
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            await self._queue.put(None)
            if self._stream is not None:
                async for _ in self._stream:  # the end-of-session request finishes the stream
                    pass
