"""The embedded store's errors: ClickHouse-style query errors and the request errors that the
server turns into them (see server.error_response)."""
from __future__ import annotations

import re

_ERROR_CODE_RE = re.compile(r"Code:\s*(\d+)")

# ClickHouse error codes used by the store itself.
BAD_ARGUMENTS = 36
UNKNOWN_SETTING = 115
READONLY = 164
QUERY_WAS_CANCELLED = 394
TOO_MANY_SIMULTANEOUS_QUERIES = 202
AUTHENTICATION_FAILED = 516
STD_EXCEPTION = 1001


class StoreQueryError(Exception):
    """A ClickHouse-style error: numeric code and the `Code: N. DB::Exception: ...` text."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: Exception) -> StoreQueryError:
        text = str(exc).strip()
        start = text.find("Code: ")
        if start > 0:
            text = text[start:]
        match = _ERROR_CODE_RE.search(text)
        if match:
            return cls(int(match.group(1)), text)
        return cls(STD_EXCEPTION, f"Code: {STD_EXCEPTION}. DB::Exception: {text}. (STD_EXCEPTION)")

    @classmethod
    def build(cls, code: int, name: str, sentence: str) -> StoreQueryError:
        return cls(code, f"Code: {code}. DB::Exception: {sentence} ({name})")


class BodyTooLarge(Exception):
    """The request body passed STORE_MAX_BODY_BYTES."""


class UnsupportedEncoding(ValueError):
    """A request Content-Encoding the store cannot decode."""


class FormRefused(ValueError):
    """The multipart form could not be parsed within the store's limits (`detail` says why)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail
