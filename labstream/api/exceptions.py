"""Errors the lab API turns into HTTP answers, all in one shape.

Every error, from a handler, the auth check, the size limit or an unknown route,
answers `{"error": message, "hint": hint or null, "status": code}` (`error_body`).
"""

from __future__ import annotations

import json

from base.errors import LabstreamError


class ApiError(LabstreamError):
    """An error with an HTTP status."""

    status_code = 400

    @property
    def headers(self) -> dict[str, str]:
        return {}


class Unauthenticated(ApiError):
    """No credential, or one that is malformed, unknown, expired or revoked (never say which)."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="labstream"'}


class Forbidden(ApiError):
    """The credential is valid but its role may not do this."""

    status_code = 403


class NotFound(ApiError):
    """Absent, or belongs to another tenant (never say which)."""

    status_code = 404


class BadInput(ApiError):
    """Malformed input outside the body's schema: ids, NUL bytes, negative numbers."""

    status_code = 400


class InvalidRequest(ApiError):
    status_code = 422


class Conflict(ApiError):
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class RateLimited(ApiError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ApiError):
    status_code = 503


def error_body(status: int, message: str, hint: str | None = None) -> bytes:
    return json.dumps({"error": message, "hint": hint, "status": status}).encode()
