"""The torch backend on the real target: batched scoring equals per-session scoring, and the
oneDNN Linear kernels compute the same target as torch's default BLAS."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from verifier.backends.base import ScoreBatch, SequenceState
from verifier.backends.torch_backend import TorchBackend
from verifier.core.models import default_target_dir

pytestmark = pytest.mark.integration


def score_one(backend: TorchBackend, state: SequenceState, tokens: list[int], rows: int) -> npt.NDArray[np.float32]:
    return backend.score(ScoreBatch.of([(state, tokens, rows)]))[0]


@pytest.fixture(scope="module")
def batched() -> TorchBackend:
    return TorchBackend(default_target_dir(), threads=1, varlen=True)


@pytest.fixture(scope="module")
def per_item() -> TorchBackend:
    return TorchBackend(default_target_dir(), threads=1, varlen=False)


def test_batched_scoring_equals_per_session_scoring(batched: TorchBackend, per_item: TorchBackend) -> None:
    """Three sessions of different lengths through several rounds, with roll-backs: one batched
    pass per round gives the logits (within 2e-4) and the greedy tokens of separate forwards
    through transformers' own model."""
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 49152, size=n).tolist() for n in (31, 7, 90)]
    a_states = [batched.new_state() for _ in prompts]
    b_states = [per_item.new_state() for _ in prompts]
    got = batched.score(ScoreBatch.of([(s, p, 2) for s, p in zip(a_states, prompts, strict=True)]))
    want = [score_one(per_item, s, p, 2) for s, p in zip(b_states, prompts, strict=True)]
    for round_ in range(4):
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert np.abs(g - w).max() < 2e-4
            assert (g.argmax(-1) == w.argmax(-1)).all()
        news = [rng.integers(0, 49152, size=k).tolist() for k in ((5, 1, 3), (2, 4, 1), (1, 1, 1), (6, 2, 5))[round_]]
        got = batched.score(ScoreBatch.of([(s, n, len(n)) for s, n in zip(a_states, news, strict=True)]))
        want = [score_one(per_item, s, n, len(n)) for s, n in zip(b_states, news, strict=True)]
        for be, states in ((batched, a_states), (per_item, b_states)):
            for s in states:  # keep all but the last two tokens, as after a rejection
                be.truncate(s, s.length - 2)
    batched.release(a_states[0])
    with pytest.raises(TypeError):
        score_one(batched, a_states[0], [1], 1)


def test_a_state_appears_once_per_batch(batched: TorchBackend) -> None:
    state = batched.new_state()
    with pytest.raises(ValueError):
        ScoreBatch.of([(state, [1, 2], 1), (state, [3], 1)])


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_onednn_and_default_kernels_agree_on_prefill_and_verify_rounds() -> None:
    fast = TorchBackend(default_target_dir(), threads=1, cpu_linear="onednn")
    plain = TorchBackend(default_target_dir(), threads=1, cpu_linear="torch")
    assert fast.onednn_linear and not plain.onednn_linear
    prompt = list(range(1000, 1030))
    states = (fast.new_state(), plain.new_state())
    a, b = (score_one(be, s, prompt, 3) for be, s in zip((fast, plain), states, strict=True))
    assert np.allclose(a, b, atol=2e-3) and (a.argmax(-1) == b.argmax(-1)).all()
    for k in (1, 5):  # a verify round: the pending token plus k drafts, logits for every row
        feed = list(range(2000, 2001 + k))
        a, b = (score_one(be, s, feed, len(feed)) for be, s in zip((fast, plain), states, strict=True))
        assert a.shape == b.shape == (k + 1, fast.info.vocab_size)
        assert np.allclose(a, b, atol=2e-3) and (a.argmax(-1) == b.argmax(-1)).all()
