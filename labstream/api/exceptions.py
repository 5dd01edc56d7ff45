"""Errors the lab API turns into HTTP answers."""

from __future__ import annotations

from base.errors import LabstreamError


class ApiError(LabstreamError):
    """An error with an HTTP status; the body is `{"error": message, "hint": hint}`."""

    status_code = 400


class MissingTenant(ApiError):
    status_code = 400


class UnknownTenant(ApiError):
    status_code = 403


class NotFound(ApiError):
    """Absent, or belongs to another tenant (never say which)."""

    status_code = 404


class InvalidRequest(ApiError):
    status_code = 422


class Conflict(ApiError):
    status_code = 409
