"""The edge's tokenizer: the draft GGUF's vocabulary (the target shares it), loaded vocab-only."""

from __future__ import annotations

from pathlib import Path

import llguidance

from verifier.core.gguf import load_llama

_END_OF_TURN_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>")


class Tokenizer:
    def __init__(self, gguf_path: str | Path) -> None:
        self._llm = load_llama(gguf_path, vocab_only=True)
        self.vocab_size = self._llm.n_vocab()
        md = self._llm.metadata
        self.chat_template: str | None = md.get("tokenizer.chat_template")
        self.add_bos = md.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self.bos_id = self._llm.token_bos()
        self.eos_id = self._llm.token_eos()
        self.bos_text = self.piece(self.bos_id, special=True).decode("utf-8", "replace") if self.bos_id >= 0 else ""
        self.eos_text = self.piece(self.eos_id, special=True).decode("utf-8", "replace") if self.eos_id >= 0 else ""
        stops = {self.eos_id} if self.eos_id >= 0 else set()
        for text in _END_OF_TURN_TEXTS:
            ids = self.encode(text, special=True, add_bos=False)
            if len(ids) == 1 and self.piece(ids[0], special=False) == b"":
                stops.add(ids[0])
        self.stop_token_ids = frozenset(stops)
        self._pieces: dict[int, bytes] = {}

    def encode(self, text: str, special: bool, add_bos: bool | None = None) -> list[int]:
        bos = self.add_bos if add_bos is None else add_bos
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special)

    def piece(self, token_id: int, special: bool = False) -> bytes:
        return self._llm.detokenize([token_id], special=special)

    def grammar_tokenizer(self, stop_token_ids: tuple[int, ...]) -> llguidance.LLTokenizer:
        """This vocabulary for the grammar engine, ending on ``stop_token_ids`` (slow to build: cache it)."""
        import llama_cpp  # noqa: PLC0415 - loaded by load_llama already
        from llguidance.llamacpp import lltokenizer_from_vocab  # noqa: PLC0415 - imports llama_cpp

        return lltokenizer_from_vocab(llama_cpp.llama_model_get_vocab(self._llm.model), eos_token=list(stop_token_ids))

    def token_bytes(self, token_ids: list[int]) -> bytes:
        """The output bytes of tokens; special tokens (end of turn...) render as nothing."""
        out = bytearray()
        for t in token_ids:
            b = self._pieces.get(t)
            if b is None:
                b = self._pieces[t] = self.piece(t)
            out += b
        return bytes(out)
