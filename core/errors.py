"""One error hierarchy; the API renders it with a global handler (never a 500 for user mistakes)."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error the caller can act on. commit=True: the unit of work still commits what was flushed before
    the error (the request's session does; e.g. a failed sign-in's count survives the 401); by default it
    rolls back."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        details: dict[str, Any] | None = None,
        commit: bool = False,
    ):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.details = details or {}
        self.commit = commit


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"


class TooManyAttempts(AppError):
    """Slow down: the answer carries Retry-After (seconds)."""

    status_code = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after_seconds: int, commit: bool = False):
        super().__init__(message, details={"retry_after_seconds": retry_after_seconds}, commit=commit)
        self.retry_after_seconds = retry_after_seconds


class ConfigError(AppError):
    status_code = 500
    code = "config_error"
