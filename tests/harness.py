"""An in-memory edge and verifier for fast tests: the real apps, engine, client, channel and
decoding loops, wired through httpx's ASGI transport (HTTP routes) and an in-memory frame link
(the channel), over a tiny deterministic target backend, a scripted drafter and a letter
tokenizer. No sockets, no model files.

The target is a bigram model over ``V`` tokens whose greedy next token is ``successor(prev)``,
cycling through 1..V-1 (it never ends a turn by itself); token 0 is the end of turn. A token
``t > 0`` reads as the letter ``chr(ord("a") + t - 1)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import llguidance
import numpy as np
import numpy.typing as npt
from fastapi import FastAPI

from proxy.app import create_app as create_edge_app
from proxy.cloud.channel import Connector, FrameLink, VerifierChannel
from proxy.cloud.client import VerifierClient
from proxy.decoding.context import LoopContext
from proxy.draft.base import Drafter
from proxy.draft.draws import DraftSampling, draw_draft_token, draw_standalone_token
from proxy.draft.pool import DrafterPool
from proxy.service import EdgeService
from proxy.settings import EdgeSettings
from proxy.tokenizer import Tokenizer
from verifier.app import VerifierService
from verifier.app import create_app as create_verifier_app
from verifier.backends.base import ScoreBatch, SequenceState, TargetBackend
from verifier.channel import ChannelConnection
from verifier.core.asgi import KeyRing
from verifier.core.codec import DraftToken, encode_round
from verifier.core.grammar import GrammarCompiler
from verifier.core.protocol import ModelInfo
from verifier.core.sampling import SparseDist
from verifier.core.wire import Round
from verifier.engine import VerifierEngine

V = 16
EOS = 0
VERIFIER_URL = "http://verifier.test"
EDGE_URL = "http://edge.test"


def successor(token: int) -> int:
    return token % (V - 1) + 1


def greedy_continuation(last: int, n: int) -> list[int]:
    """What the bigram target produces greedily after ``last``."""
    out = [successor(last)]
    while len(out) < n:
        out.append(successor(out[-1]))
    return out[:n]


def bigram_logits(prev: int) -> npt.NDArray[np.float32]:
    row = np.full(V, -5.0, dtype=np.float32)
    row[successor(prev)] = 5.0
    return row


class ListState(SequenceState):
    def __init__(self) -> None:
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)


class BigramBackend(TargetBackend):
    """Scores each token with ``logits_of(token)`` (``bigram_logits`` by default); counts what it
    scored, its passes and releases; ``fail_on_extend`` makes its n-th scored item raise (a
    backend crash mid-request)."""

    def __init__(self, max_context: int = 512, fail_on_extend: int | None = None,
                 logits_of: Callable[[int], npt.NDArray[np.float32]] = bigram_logits, pass_s: float = 0.0) -> None:
        self.logits_of = logits_of
        self.pass_s = pass_s  # each pass takes at least this long (a model's time)
        self.info = ModelInfo(model="bigram", backend="fake", vocab_size=V, max_context=max_context,
                              eos_token_ids=[EOS])
        self.scored = 0
        self.extends = 0  # items scored, over all passes
        self.passes = 0
        self.batch_sizes: list[int] = []
        self.released = 0
        self.fail_on_extend = fail_on_extend

    def new_state(self) -> ListState:
        return ListState()

    def score(self, batch: ScoreBatch) -> list[npt.NDArray[np.float32]]:
        if self.pass_s:
            time.sleep(self.pass_s)
        self.passes += 1
        self.batch_sizes.append(len(batch))
        return [self._extend(s, batch.tokens_of(i).tolist(), batch.logits_rows[i]) for i, s in enumerate(batch.states)]

    def _extend(self, state: SequenceState, token_ids: list[int], logits_rows: int) -> npt.NDArray[np.float32]:
        if not isinstance(state, ListState):
            raise TypeError("not a ListState")
        self.extends += 1
        if self.fail_on_extend is not None and self.extends == self.fail_on_extend:
            raise RuntimeError("backend crashed")
        state.tokens.extend(token_ids)
        self.scored += len(token_ids)
        rows = np.stack([self.logits_of(t) for t in token_ids])
        return rows[len(rows) - logits_rows:] if logits_rows else rows[:0]

    def truncate(self, state: SequenceState, length: int) -> None:
        if not isinstance(state, ListState):
            raise TypeError("not a ListState")
        del state.tokens[length:]

    def release(self, state: SequenceState) -> None:
        self.released += 1


class LetterTokenizer(Tokenizer):
    """Token t > 0 is one letter; token 0 (end of turn) renders as nothing."""

    def __init__(self) -> None:  # no GGUF: the attributes the edge reads, set by hand
        self.vocab_size = V
        self.chat_template = None  # the edge falls back to ChatML
        self.add_bos = False
        self.bos_id, self.eos_id = -1, EOS
        self.bos_text, self.eos_text = "", ""
        self.stop_token_ids = frozenset({EOS})
        self._pieces = {}

    def encode(self, text: str, special: bool, add_bos: bool | None = None) -> list[int]:
        return [ord(c) % (V - 1) + 1 for c in text]

    def piece(self, token_id: int, special: bool = False) -> bytes:
        return b"" if token_id == EOS else chr(ord("a") + token_id - 1).encode()

    def grammar_tokenizer(self, stop_token_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
        return letter_grammar_tokenizer(stop_token_ids)


class _LetterVocab:
    """The letter vocabulary as llguidance's TokenizerWrapper reads it."""

    eos_token_id = EOS
    bos_token_id = None
    special_token_ids = [EOS]
    tokens = [b"\xff<eos>"] + [chr(ord("a") + t - 1).encode() for t in range(1, V)]

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode() if isinstance(text, str) else text
        return [c - ord("a") + 1 for c in data]


def letter_grammar_tokenizer(stop_token_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
    """The letter vocabulary for the grammar engine (regexes over a..o)."""
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_LetterVocab()), eos_token=list(stop_token_ids),
                                  slices=[])


class ScriptedDrafter(Drafter):
    """Drafts the target's greedy continuation, except at absolute positions ``p`` with
    ``wrong(p)``, where it drafts ``successor(successor(prev))`` (a token the target rejects
    when greedy).
    Sampled drafts come from the bigram's own tempered logits, so they carry real proposals."""

    def __init__(self, wrong: Callable[[int], bool] = lambda p: p % 3 == 2,
                 logits_of: Callable[[int], npt.NDArray[np.float32]] = bigram_logits) -> None:
        self.wrong = wrong
        self.logits_of = logits_of  # the target's rows to draft from (the bigram's by default)
        self.calls = 0

    def _logits(self, context: list[int]) -> npt.NDArray[np.float32]:
        prev = context[-1]
        if self.wrong(len(context)):
            row = np.full(V, -5.0, dtype=np.float32)
            row[successor(successor(prev))] = 5.0
            return row
        return self.logits_of(prev)

    def draft(self, context: list[int], sampling: DraftSampling) -> DraftToken | None:
        self.calls += 1
        return draw_draft_token(sampling.processed(self._logits(context), context), sampling, len(context))

    def next_token(self, context: list[int], sampling: DraftSampling) -> int:
        return draw_standalone_token(sampling.processed(self._logits(context), context), sampling, len(context))


@dataclass
class LinkFaults:
    """What the in-memory link does to frames: a delay per frame (seconds, up to ``jitter_s``
    at random), with answers to the edge free to overtake each other (``reorder``); frames to
    the verifier keep their order, as on one TCP connection."""

    jitter_s: float = 0.0
    reorder: bool = False
    seed: int = 0


class MemoryLink:
    """The edge's end of an in-memory connection to a ChannelConnection on the verifier."""

    def __init__(self, engine_of: Callable[[], object], faults: LinkFaults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._up: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._down: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._up_wire: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._down_wire: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        connection = ChannelConnection(engine_of(), self._to_edge)  # type: ignore[arg-type]
        self._server = asyncio.create_task(connection.serve(self._up.get))
        self._pumps = [asyncio.create_task(self._pump(self._up_wire, self._up)),
                       asyncio.create_task(self._pump(self._down_wire, self._down))]

    def _delay(self) -> float:
        return self._rng.uniform(0, self._faults.jitter_s) if self._faults.jitter_s else 0.0

    @staticmethod
    async def _pump(wire: asyncio.Queue[tuple[float, bytes | None]], out: asyncio.Queue[bytes | None]) -> None:
        """Deliver in order, each frame at its time (never before the one ahead of it)."""
        loop = asyncio.get_running_loop()
        while True:
            at, data = await wire.get()
            await asyncio.sleep(max(0.0, at - loop.time()))
            out.put_nowait(data)

    async def _to_edge(self, data: bytes) -> None:
        at = asyncio.get_running_loop().time() + self._delay()
        if not self._faults.reorder:
            self._down_wire.put_nowait((at, data))
            return

        async def deliver() -> None:  # on its own: may overtake frames sent before it
            await asyncio.sleep(at - asyncio.get_running_loop().time())
            self._down.put_nowait(data)

        task = asyncio.create_task(deliver())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, data: bytes) -> None:
        self._up_wire.put_nowait((asyncio.get_running_loop().time() + self._delay(), data))

    async def receive(self) -> bytes | None:
        return await self._down.get()

    async def close(self) -> None:
        self._up.put_nowait(None)
        self._down.put_nowait(None)
        with contextlib.suppress(BaseException):
            await self._server
        for pump in self._pumps:
            pump.cancel()


def memory_connector(verifier: VerifierService, faults: LinkFaults | None = None) -> Connector:
    async def connect() -> FrameLink:
        return MemoryLink(verifier.ready_engine, faults or LinkFaults())

    return connect


@dataclass
class Harness:
    backend: BigramBackend
    verifier_app: FastAPI
    client: VerifierClient
    channel: VerifierChannel
    drafters: list[ScriptedDrafter]
    service: EdgeService
    edge_app: FastAPI
    closers: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def verifier(self) -> VerifierService:
        service: VerifierService = self.verifier_app.state.service
        return service

    def edge_http(self) -> httpx.AsyncClient:
        """An HTTP client to the edge app (in memory)."""
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.edge_app), base_url=EDGE_URL,
                                 timeout=30)
        self.closers.append(http)
        return http

    def ctx(self, proposal_support: int = 16, channel: VerifierChannel | None = None, **parts: Any) -> LoopContext:
        """A loop context over this harness's verifier (or ``channel``); ``parts``: its other fields."""
        return LoopContext(channel or self.channel, self.client, proposal_support, **parts)

    async def aclose(self) -> None:
        for http in self.closers:
            await http.aclose()
        await self.channel.aclose()
        await self.client.aclose()


async def start(
    backend: BigramBackend | None = None,
    transport_wrapper: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    slots: int = 1,
    faults: LinkFaults | None = None,
    **settings: object,
) -> Harness:
    """A verifier app (backend loaded) and an edge app speaking to it in memory."""
    backend = backend or BigramBackend()
    verifier_app = create_verifier_app(lambda: backend, session_ttl_s=60.0, max_sessions=8,
                                       grammars=GrammarCompiler(letter_grammar_tokenizer))
    await verifier_app.state.service.load()
    # raise_app_exceptions=False: a crash in the verifier reaches the edge as a 500, as over a socket
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=verifier_app, raise_app_exceptions=False)
    if transport_wrapper is not None:
        transport = transport_wrapper(transport)
    client = VerifierClient(VERIFIER_URL, timeout_s=30, transport=transport)
    channel = VerifierChannel(memory_connector(verifier_app.state.service, faults))
    drafters = [ScriptedDrafter() for _ in range(slots)]
    edge_settings = EdgeSettings(served_model_name="bigram", **settings)  # type: ignore[arg-type]
    service = EdgeService(edge_settings, LetterTokenizer(), DrafterPool(drafters, edge_settings.max_waiting), client,
                          channel)

    async def factory() -> EdgeService:
        return service

    edge_app = create_edge_app(factory, max_body_bytes=edge_settings.max_body_bytes,
                               keys=KeyRing.load(edge_settings.api_key, edge_settings.api_key_file),
                               cors_origins=tuple(edge_settings.cors_origins))
    edge_app.state.service = service  # the ASGI transport runs no lifespan
    return Harness(backend, verifier_app, client, channel, drafters, service, edge_app)


def next_round(engine: VerifierEngine, session_id: str, drafts: list[int] | tuple[int, ...] = (),
               proposals: list[SparseDist] | None = None) -> Round:
    """The round an edge sends next for a session, drafting on its verified tokens (stop-and-wait)."""
    s = engine.session(session_id)
    qs: list[SparseDist | None] = list(proposals) if proposals else [None] * len(drafts)
    return encode_round(0, 1, s.epoch, len(s.committed), [DraftToken(t, q) for t, q in zip(drafts, qs, strict=True)])


class FakeClock:
    """A clock in seconds to inject into the code under test: it moves only when the test (or a
    fake backend or drafter of the test) moves it, so timings come out exact."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Let the event loop run until ``condition`` holds. The timeout only ends a hang: tests wait
    for what happened, never for a time to pass."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"what the test waits for did not happen within {timeout_s:g} s") from None


def cli_stderr_of_bad_env(module: str, prefix: str, name: str, value: str) -> list[str]:
    """The stderr lines of ``python -m module`` started with ``name=value`` in an environment
    free of other ``prefix`` settings; it must exit non-zero without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)} | {name: value}
    done = subprocess.run([sys.executable, "-m", module], env=env, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()
