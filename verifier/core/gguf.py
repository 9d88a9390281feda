"""The one place a GGUF model is opened in llama.cpp (llama-cpp-python).

The edge's drafter and tokenizer and the distillation tool all run GGUFs; they open them
here, with the same defaults. ``llama_cpp`` is imported when a model is opened, so the rest
of the core imports without it (a verifier image has no llama.cpp).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
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


SYSTEM_INFO_SCRIPT = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode(errors='replace'))"


def llama_build_problem(timeout_s: float = 120.0) -> str | None:
    """Whether the installed llama.cpp can run on this CPU, asked of a subprocess (a library built
    for another CPU may die of SIGILL as it loads): None when it fits, else what is wrong and what
    to do. The edge asks before it loads its draft."""
    from verifier.core.cpu import explain_exit, explain_gaps, fix_line, parse_system_info, read_cpu  # noqa: PLC0415

    cpu = read_cpu()
    try:
        done = subprocess.run([sys.executable, "-c", SYSTEM_INFO_SCRIPT], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not load within {timeout_s:.0f} s"
    if done.returncode != 0:
        return explain_exit("llama.cpp (loading llama_cpp)", done.returncode, cpu) + "\n" + done.stderr[-1000:]
    gaps = explain_gaps(parse_system_info(done.stdout), cpu)
    return f"llama.cpp on {cpu.describe()}: {gaps}\n{fix_line(cpu)}" if gaps else None


def last_logits(llm: Llama) -> npt.NDArray[np.float32]:
    """A copy of the logits after the last evaluated token."""
    raw = llm._ctx.get_logits_ith(-1)  # pinned llama-cpp-python 0.3.36 API
    return np.ctypeslib.as_array(raw, shape=(llm.n_vocab(),)).copy()
