"""The error envelope both servers answer with, built in one place.

``{"error": {"message", "type", "param", "code"}}``: OpenAI's shape, used by the edge's
OpenAI API and by the verify API alike.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_envelope(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return ErrorEnvelope(error=ErrorBody(message=message, type=type_, param=param, code=code)).model_dump()


def error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 503:
        return "service_unavailable"
    return "server_error" if status >= 500 else "invalid_request_error"
