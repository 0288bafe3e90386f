"""Request ids: one id per request, carried from service to service and onto every log line.

The gateway and the embedder take the caller's `X-Request-ID` when it is a plain token (else they
make one), answer it in the same header and in every error body, and stamp each log record written
while the request is handled (`%(request_id)s`, "-" outside a request). `EmbedderClient` sends the
current id on, so one search reads as one id in the gateway's and the embedder's logs; an ingest
batch uses its job's id. No FastAPI here: the worker and the clients import this module too.
"""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "X-Request-ID"
# What is taken from a caller as is: short, and nothing that could forge a log line or a header.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_id() -> str:
    return uuid.uuid4().hex


def accept(incoming: str | None) -> str:
    """The caller's id when it is a plain token, else a new one."""
    return incoming if incoming and _ACCEPTED.fullmatch(incoming) else new_id()


def current() -> str | None:
    return _current.get()


def outgoing_headers() -> dict[str, str]:
    """The header that carries the current id to the next service ({} outside a request)."""
    request_id = _current.get()
    return {HEADER: request_id} if request_id else {}


def bind(request_id: str | None):
    """Make `request_id` current in this context (a task, or a thread); returns the token to `reset`."""
    return _current.set(request_id)


def reset(token) -> None:
    _current.reset(token)


@contextmanager
def bound(request_id: str | None) -> Iterator[str | None]:
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)


def install_log_records() -> None:
    """Give every log record a `request_id` attribute, whoever logs it, so a format may use it."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_adds_request_id", False):
        return

    def record_with_id(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = _current.get() or "-"
        return record

    record_with_id._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_id)
