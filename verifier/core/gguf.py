"""The one place a GGUF model is opened in llama.cpp (llama-cpp-python).

The edge's drafter and tokenizer and the distillation tool all run GGUFs; they open them
here, with the same defaults. ``llama_cpp`` is imported when a model is opened, so the rest
of the core imports without it (a verifier image has no llama.cpp).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from llama_cpp import Llama


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's own stderr (file descriptor 2) for a moment. A vocab-only load has no
    trained context length, so llama.cpp warns of a "possible training context overflow" that
    does not apply; load errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_llama(
    path: str | Path,
    n_ctx: int = 1024,
    threads: int | None = None,
    *,
    logits_all: bool = False,
    vocab_only: bool = False,
) -> Llama:
    """Open a GGUF. ``threads`` None lets llama.cpp choose; ``logits_all`` keeps every
    position's logits (``Llama.scores``); ``vocab_only`` loads the tokenizer alone."""
    from llama_cpp import Llama  # noqa: PLC0415 - heavy optional dependency, see module docstring

    with quiet_stderr() if vocab_only else contextlib.nullcontext():
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits_all,
            vocab_only=vocab_only,
            verbose=False,
        )


def last_logits(llm: Llama) -> npt.NDArray[np.float32]:
    """A copy of the logits after the last evaluated token."""
    raw = llm._ctx.get_logits_ith(-1)  # pinned llama-cpp-python 0.3.36 API
    return np.ctypeslib.as_array(raw, shape=(llm.n_vocab(),)).copy()
