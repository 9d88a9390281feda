"""OpenAI errors of the edge, and the handlers that turn every failure into the envelope
(``verifier.core.errors``)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from verifier.core.errors import error_envelope


class OpenAIError(Exception):
    """An error that reaches the client as {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # sent as Retry-After
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.type, self.param, self.code)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param, code)


def verifier_unavailable(detail: str) -> OpenAIError:
    return OpenAIError(503, f"verifier unavailable: {detail}", "service_unavailable", None, "verifier_unavailable")


def _from_validation(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    if not errors:
        return bad_request("invalid request")
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    # pydantic puts the union/variant tag in loc (e.g. "str", "list[str]"): keep the field path
    param = ".".join(p for p in loc if not p[:1].isalpha() or "[" not in p) or None
    kind = err.get("type", "")
    if kind == "json_invalid":
        return bad_request(f"We could not parse the JSON body of your request: {err.get('msg')}", None, "invalid_json")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}", param, "unsupported_parameter")
    if kind == "missing":
        return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    if kind == "model_attributes_type" and not loc:
        return bad_request("The request body must be a JSON object.", None, "invalid_json")
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return bad_request(f"Invalid value for '{param}': {msg}" if param else msg, param, "invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))} if exc.retry_after_s else None
        return JSONResponse(status_code=exc.status, content=exc.envelope(), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = _from_validation(exc)
        return JSONResponse(status_code=err.status, content=err.envelope())

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        err = OpenAIError(exc.status_code, str(exc.detail), "invalid_request_error", None, code)
        return JSONResponse(status_code=exc.status_code, content=err.envelope())

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        err = OpenAIError(500, f"internal error: {type(exc).__name__}", "server_error", None, "internal_error")
        return JSONResponse(status_code=500, content=err.envelope())
