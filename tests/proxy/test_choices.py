"""n > 1 and best_of through the edge (in memory, the real OpenAI SDK)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import openai

from tests.harness import EOS, BigramBackend, Harness, V, start

TARGET = np.random.default_rng(9).normal(0.0, 1.0, size=(V, V)).astype(np.float32)
TARGET[:, EOS] = -4.0
MESSAGES: Any = [{"role": "user", "content": "hi"}]
SPEC = {"tandem": {"mode": "speculative", "gamma": 3}}


async def harness() -> tuple[Harness, openai.AsyncOpenAI]:
    h = await start(BigramBackend(logits_of=lambda t: TARGET[t]), slots=2)
    for d in h.drafters:
        d.logits_of = lambda t: TARGET[t]
    return h, openai.AsyncOpenAI(base_url="http://edge.test/v1", api_key="unused", max_retries=0,
                                 http_client=h.edge_http())


def test_n_sampled_choices_are_seeded_apart_reproducible_and_streamed_alike() -> None:
    async def body() -> None:
        h, client = await harness()
        kw: dict[str, Any] = {"model": "bigram", "messages": MESSAGES, "temperature": 1.0, "seed": 11,
                              "max_tokens": 10, "extra_body": SPEC}
        r = await client.chat.completions.create(n=3, **kw)
        texts = [c.message.content for c in sorted(r.choices, key=lambda c: c.index)]
        assert [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) == 3
        assert r.usage is not None and r.usage.completion_tokens == sum(len(t or "") for t in texts) == 30
        one = await client.chat.completions.create(**kw)
        assert one.choices[0].message.content == texts[0]  # choice 0 is the n=1 answer
        again = await client.chat.completions.create(n=3, **kw)
        assert [c.message.content for c in again.choices] == texts
        stream = await client.chat.completions.create(n=3, stream=True, stream_options={"include_usage": True}, **kw)
        parts: dict[int, str] = {0: "", 1: "", 2: ""}
        finishes = {}
        usage = None
        async for chunk in stream:
            for c in chunk.choices:
                parts[c.index] += c.delta.content or ""
                if c.finish_reason:
                    finishes[c.index] = c.finish_reason
            usage = chunk.usage or usage
        assert [parts[i] for i in range(3)] == texts and finishes == {0: "length", 1: "length", 2: "length"}
        assert usage is not None and usage.completion_tokens == 30
        await h.aclose()

    asyncio.run(body())


def test_greedy_choices_are_one_generation() -> None:
    async def body() -> None:
        h, client = await harness()
        r = await client.chat.completions.create(model="bigram", messages=MESSAGES, temperature=0, n=4,
                                                 max_tokens=8, extra_body=SPEC)
        assert len({c.message.content for c in r.choices}) == 1 and len(r.choices) == 4
        assert r.usage is not None and r.usage.completion_tokens == 32
        assert h.verifier.engine.stats.sessions_created == 1
        await h.aclose()

    asyncio.run(body())


def test_best_of_returns_the_most_likely_of_its_candidates() -> None:
    async def body() -> None:
        h, client = await harness()
        kw: dict[str, Any] = {"model": "bigram", "prompt": "cab", "temperature": 1.0, "seed": 5, "max_tokens": 8,
                              "extra_body": SPEC}
        candidates = await client.completions.create(n=4, logprobs=0, **kw)
        sums = []
        for c in candidates.choices:
            assert c.logprobs is not None and c.logprobs.token_logprobs is not None
            sums.append(sum(lp for lp in c.logprobs.token_logprobs if lp is not None))
        order = np.argsort(-np.array(sums), kind="stable")
        best = await client.completions.create(best_of=4, n=2, **kw)
        assert [c.text for c in best.choices] == [candidates.choices[i].text for i in order[:2]]
        assert all(c.logprobs is None for c in best.choices)  # computed to rank, not asked for
        assert best.usage is not None and best.usage.completion_tokens == 16
        await h.aclose()

    asyncio.run(body())
