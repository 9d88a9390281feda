"""How a call to the verifier fails, over the HTTP client and the channel alike."""

from __future__ import annotations


class VerifierUnavailable(Exception):
    """The verifier could not be reached, timed out or is not ready."""


class VerifierRejected(Exception):
    """The verifier refused a call (a bug on the edge, or a context the cloud cannot hold);
    ``code`` is the verifier's error code (``session_not_found``, ...)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
