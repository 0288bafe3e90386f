"""Who may query the store: the one configured user, by basic auth, `X-ClickHouse-User` /
`X-ClickHouse-Key` headers or `user` / `password` URL parameters (ClickHouse's three ways)."""
from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping

from services.embedded_store.config import StoreSettings
from services.embedded_store.errors import AUTHENTICATION_FAILED, StoreQueryError


def authentication_failed() -> StoreQueryError:
    return StoreQueryError.build(
        AUTHENTICATION_FAILED, "AUTHENTICATION_FAILED",
        "Authentication failed: password is incorrect, or there is no user with such name.")


class Credentials:
    def __init__(self, settings: StoreSettings):
        self.user = settings.user or "default"
        self.password = settings.password.get_secret_value() if settings.password else ""
        self.required = settings.auth_required

    def accepts(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> bool:
        """`headers` must look names up case-insensitively (Starlette's Headers do)."""
        if not self.required:
            return True
        user, password = None, None
        header = headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:  # bad base64 or not UTF-8
                return False
        elif "x-clickhouse-user" in headers:
            user = headers["x-clickhouse-user"]
            password = headers.get("x-clickhouse-key", "")
        elif "user" in query_params:
            user = query_params["user"]
            password = query_params.get("password", "")
        if user is None:
            return False
        return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            (password or "").encode(), self.password.encode())
