"""Turn token bytes into text deltas: never split a UTF-8 character, never emit a stop string.

Pure and incremental. Text that could still be the start of a stop string is held back
until it is either completed (generation stops, the stop string is dropped) or ruled out.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: list[str] | None = None) -> None:
        self._stop = [s for s in (stop or []) if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.stopped = False
        self.text = ""  # everything emitted so far

    def push(self, data: bytes) -> str:
        """Feed the bytes of the next token(s); return the text that is safe to emit now."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(data)
        return self._release()

    def finish(self) -> str:
        """End of generation: flush what was held (a dangling partial character becomes U+FFFD)."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        out = self._held
        self._held = ""
        self.text += out
        return out

    def _release(self) -> str:
        held = self._held
        if not self._stop:
            self._held = ""
            self.text += held
            return held
        cut = min((i for i in (held.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            self.text += held[:cut]
            return held[:cut]
        keep = 0  # longest suffix of held that is a proper prefix of some stop string
        for s in self._stop:
            for n in range(min(len(s) - 1, len(held)), keep, -1):
                if held.endswith(s[:n]):
                    keep = n
                    break
        out = held[: len(held) - keep]
        self._held = held[len(held) - keep:]
        self.text += out
        return out
