"""The one error shape of the gateway: an HTTP status and {"error": "<what went wrong and what to do>"}."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import ValidationError

EXAMPLE_BODY = '{"text": "你好，世界。"}'


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _field_name(location: tuple) -> str:
    """'speed', 'voice.id': the part of a pydantic error location that names the request field."""
    names = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(names)


def describe_validation_errors(errors: list[dict]) -> str:
    """One readable line for pydantic's (or FastAPI's) list of validation errors."""
    problems = []
    for error in errors:
        name = _field_name(tuple(error.get("loc", ())))
        kind = error.get("type", "")
        if kind == "json_invalid":
            return f"the request body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')}): " \
                   f"send a JSON object such as {EXAMPLE_BODY}"
        if kind == "missing":
            problems.append(f"'{name}' is required")
        elif kind in ("model_type", "dict_type") or not name:
            problems.append(f"the body must be a JSON object such as {EXAMPLE_BODY}")
        else:
            problems.append(f"'{name}': {error.get('msg', 'invalid value')} (got {error.get('input')!r})")
    return "; ".join(problems)


def from_validation_error(error: ValidationError) -> ApiError:
    return ApiError(400, describe_validation_errors(error.errors()))
