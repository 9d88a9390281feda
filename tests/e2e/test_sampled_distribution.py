"""Sampled speculation through the real edge (llama.cpp draft, torch verifier, real HTTP) follows
the target's distribution.

N completion requests, each with its own seed, each drafting one token that the verifier accepts or
replaces (rejection sampling); the histogram of their first output token is tested against the
target's law at that position, computed independently here (transformers, float32).

Planted-bug twins: the same chi-square with the same N must reject the output of a speculative
sampler with a bug, drawn here with this position's real target law p (transformers) and the
edge's real proposal q (the edge's own code over the draft model):
- the residual drawn from p instead of norm(max(0, p - q));
- acceptance with probability p(d) instead of min(1, p(d) / q(d)).
Their power at this N is computed next to them (noncentral chi-square over the test's own bins)
and must be at least 0.99. The third bug of the issue, a stale draft kept after a rejection, needs
a second position: the pipelined edge's test catches it (tests/proxy/decoding/test_pipelined_sampling.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import openai
import pytest
import torch
from scipy.stats import binomtest

from proxy.draft.draws import DraftSampling
from proxy.draft.llama_drafter import LlamaDrafter
from tests.conftest import MODEL_ID, Server
from tests.e2e.test_lossless import reference  # noqa: F401 - the shared transformers fixture
from tests.planted import first_token_law
from tests.stats import binomial_power, chi_square_p, chi_square_power, total_variation
from verifier.core.gguf import load_llama
from verifier.core.models import default_draft_path
from verifier.core.sampling import SparseDist, target_distribution

pytestmark = pytest.mark.integration

PROMPT = "The best thing about summer is"  # 6 tokens: a cheap prefill, a broad next-token law
TEMPERATURE = 1.0
N = 300  # requests: the power calculation below shows what this catches
ALPHA = 1e-3


@dataclass(frozen=True)
class Position:
    """The first output position of PROMPT: the target's law p over the vocabulary and the
    edge's proposal q there."""

    p: npt.NDArray[np.float64]
    q: SparseDist

    @staticmethod
    def law(dist: npt.NDArray[np.float64]) -> dict[int, float]:
        return {int(i): float(dist[i]) for i in np.nonzero(dist)[0]}

    def q_dense(self) -> npt.NDArray[np.float64]:
        dense = np.zeros_like(self.p)
        dense[self.q.ids] = self.q.probs
        return dense

    def acceptance(self) -> float:
        """P(the draft token is accepted) under exact rejection sampling: sum min(p, q)."""
        return float(np.minimum(self.p, self.q_dense()).sum())

    def residual(self) -> npt.NDArray[np.float64]:
        r = np.maximum(self.p - self.q_dense(), 0.0)
        return r / r.sum()  # type: ignore[no-any-return]


#: the planted bugs (``tests.planted.first_token_law``: the first output token's law on the row rule)
BUGS = ("residual_from_p", "acceptance_with_p")


def speculative_draws(pos: Position, n: int, bug: str | None, seed: int) -> Counter[int]:
    """n first tokens from a plain numpy speculative sampler over this position's p and q, with
    ``bug`` planted (None: the exact rule)."""
    rng = np.random.default_rng(seed)
    q, qd = pos.q, pos.q_dense()
    residual = pos.p if bug == "residual_from_p" else pos.residual()
    out: Counter[int] = Counter()
    for _ in range(n):
        d = int(rng.choice(q.ids, p=q.probs))
        accept = pos.p[d] if bug == "acceptance_with_p" else min(1.0, pos.p[d] / qd[d])
        token = d if rng.random() < accept else int(rng.choice(len(residual), p=residual))
        out[token] += 1
    return out


@pytest.fixture(scope="module")
def position(reference: Any) -> Position:  # noqa: F811
    tok, _, model = reference
    ids = tok.encode(PROMPT, special=True)
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, -1].double().numpy()
    p = target_distribution(logits, TEMPERATURE, 1.0)
    llm = load_llama(default_draft_path(), n_ctx=256, threads=1)
    try:  # q as the edge computes it: its drafter's proposal over the draft model (any seed: q is the law)
        token = LlamaDrafter(llm).draft(ids, DraftSampling(TEMPERATURE, 1.0, seed=0))
    finally:
        llm.close()
    assert token is not None and token.proposal is not None
    return Position(p, token.proposal)


def first_token(client: openai.OpenAI, seed: int) -> tuple[int, dict[str, Any]]:
    """The first output token id of one seeded request (vLLM's ``return_token_ids``), and its
    ``tandem`` object."""
    r = client.completions.create(
        model=MODEL_ID, prompt=PROMPT, temperature=TEMPERATURE, seed=seed, max_tokens=2,
        extra_body={"return_token_ids": True, "tandem": {"mode": "speculative", "gamma": 1}})
    assert r.model_extra is not None and r.choices[0].model_extra is not None
    return int(r.choices[0].model_extra["token_ids"][0]), r.model_extra["tandem"]


def test_the_planted_bugs_move_this_positions_law_and_this_n_catches_them(position: Position) -> None:
    null = position.law(position.p)
    for name in BUGS:
        wrong = position.law(first_token_law(position.p, position.q, "rows", name))
        assert total_variation(null, wrong) > 0.02, name
        power = chi_square_power(null, wrong, N, ALPHA)
        assert power >= 0.99, (name, power)
        assert chi_square_p(speculative_draws(position, N, name, seed=1), null) < ALPHA, name  # the twin fails
    assert chi_square_p(speculative_draws(position, N, None, seed=1), null) > ALPHA  # the exact rule passes
    # the acceptance count's binomial test: acceptance with p(d) moves the rate from sum min(p, q)
    # to sum q p, and this N catches it; a seeded count at that rate fails the same test
    exact, wrong_rate = position.acceptance(), float((position.q_dense() * position.p).sum())
    power = binomial_power(N, exact, wrong_rate, lambda k: binomtest(k, N, exact).pvalue <= ALPHA)
    assert power >= 0.99, (exact, wrong_rate, power)
    planted = int(np.random.default_rng(2).binomial(N, wrong_rate))
    assert binomtest(planted, N, exact).pvalue <= ALPHA, (planted, exact)


def test_sampled_speculation_through_the_edge_follows_the_targets_law(speculative_edge: Server,
                                                                      position: Position) -> None:
    with openai.OpenAI(base_url=f"{speculative_edge.url}/v1", api_key="unused", max_retries=0, timeout=120) as client, \
            ThreadPoolExecutor(max_workers=2) as pool:  # the edge's two draft slots
        replies = list(pool.map(lambda seed: first_token(client, seed), range(N)))
    for _, stats in replies:  # every request took the path under test: one round over one draft
        assert stats["mode"] == "speculative" and stats["path"] == "stop_and_wait", stats
        assert stats["rounds"] >= 1 and stats["drafted"] == 1, stats
    # the first round decides the first token: its draft accepted, or a residual sample after a rejection
    accepted = sum(stats["accepted"] for _, stats in replies)
    assert 0 < accepted < N
    assert binomtest(accepted, N, position.acceptance()).pvalue > ALPHA
    counts: Mapping[int, int] = Counter(token for token, _ in replies)
    assert chi_square_p(counts, position.law(position.p)) > ALPHA, counts.most_common(12)
