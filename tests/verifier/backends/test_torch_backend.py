"""The torch backend's oneDNN Linear kernels compute the same target as torch's default BLAS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verifier.backends.torch_backend import TorchBackend
from verifier.core.models import default_target_dir

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_onednn_and_default_kernels_agree_on_prefill_and_verify_rounds() -> None:
    fast = TorchBackend(default_target_dir(), threads=1, cpu_linear="onednn")
    plain = TorchBackend(default_target_dir(), threads=1, cpu_linear="torch")
    assert fast.onednn_linear and not plain.onednn_linear
    prompt = list(range(1000, 1030))
    states = (fast.new_state(), plain.new_state())
    a, b = (be.extend(s, prompt, 3) for be, s in zip((fast, plain), states))
    assert np.allclose(a, b, atol=2e-3) and (a.argmax(-1) == b.argmax(-1)).all()
    for k in (1, 5):  # a verify round: the pending token plus k drafts, logits for every row
        feed = list(range(2000, 2001 + k))
        a, b = (be.extend(s, feed, len(feed)) for be, s in zip((fast, plain), states))
        assert a.shape == b.shape == (k + 1, fast.info.vocab_size)
        assert np.allclose(a, b, atol=2e-3) and (a.argmax(-1) == b.argmax(-1)).all()
