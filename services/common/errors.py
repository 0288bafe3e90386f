"""Domain errors with a stable code and a sentence a person can act on.

Every service maps these to HTTP in one place (`install_error_handlers`), so callers always get
`{"error": {"code": ..., "message": ..., "request_id": ...}}` and never a stack trace.
"""
from __future__ import annotations


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.retry_after = retry_after


class BadRequest(ServiceError):
    status_code = 422
    code = "invalid_request"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class DependencyUnavailable(ServiceError):
    """A service we call is down or saturated: 503 with Retry-After."""

    status_code = 503
    code = "dependency_unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 5):
        super().__init__(message, code=code, retry_after=retry_after)


class DependencyTimeout(ServiceError):
    status_code = 504
    code = "dependency_timeout"


class DependencyFailed(ServiceError):
    status_code = 502
    code = "dependency_failed"


def error_body(code: str, message: str) -> dict:
    """`{"error": {"code", "message"}}`, plus the request's id when there is one, to quote in a report."""
    from services.common.request_ids import current

    error = {"code": code, "message": message}
    request_id = current()
    if request_id:
        error["request_id"] = request_id
    return {"error": error}
