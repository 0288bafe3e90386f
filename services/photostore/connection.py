"""Talking to the server: clickhouse-connect clients, one per thread, and its errors as ours.

The only module that imports clickhouse_connect (lazily, so importing the package stays cheap).
clickhouse-connect clients must not run concurrent queries in one session, so each thread gets its
own client (no session id; they share the driver's connection pool).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlparse, urlunparse

from services.photostore.errors import StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

# ClickHouse's UNKNOWN_TABLE: reads before the first ingest answer "nothing yet", not an error.
_UNKNOWN_TABLE = 60


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username or ''}:***@{parsed.hostname or ''}"
    if parsed.port:
        netloc += f":{parsed.port}"
    return urlunparse(parsed._replace(netloc=netloc))


def server_message(error: Exception) -> str:
    """The server's sentence from a clickhouse-connect error, without the driver's wrapping."""
    text = str(error)
    marker = "server response:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = re.sub(r"\s*\(for url [^)]*\)\s*$", "", text)
    text = re.sub(r"\s*\(version [^)]*(\([^)]*\))?[^)]*\)\s*$", "", text)
    text = " ".join(text.split())
    return text[:500] + ("..." if len(text) > 500 else "")


def is_unknown_table(error: StoreError) -> bool:
    return getattr(error, "server_code", None) == _UNKNOWN_TABLE or "UNKNOWN_TABLE" in error.message


class Connection:
    """Per-thread clients of one server, and every call's failure translated to a StoreError."""

    def __init__(self, url: str, database: str, *, connect_timeout: float, query_timeout: float):
        self.url = url
        self.safe_url = redact_url(url)
        self.database = database
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[Any] = []

    def client(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        import clickhouse_connect

        try:
            client = clickhouse_connect.get_client(
                dsn=self.url,
                database=self.database,
                connect_timeout=self.connect_timeout,
                send_receive_timeout=self.query_timeout,
                # Sessions make a client refuse concurrent queries; we need none (no temp tables, no SET).
                autogenerate_session_id=False,
                show_clickhouse_errors="scrub",
                client_name="imagesearch",
            )
        except Exception as error:  # noqa: BLE001 - mapped to our errors, with the cause kept
            raise self.translate(error, "connect") from error
        self._local.client = client
        with self._lock:
            self._clients.append(client)
        return client

    def translate(self, error: Exception, action: str) -> StoreError:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
        from urllib3.exceptions import HTTPError

        if isinstance(error, StoreError):
            return error
        cause = error.__cause__ or error.__context__
        if isinstance(error, HTTPError) or (isinstance(error, OperationalError) and isinstance(cause, HTTPError)) \
                or isinstance(error, (ConnectionError, TimeoutError)):
            return StoreUnavailable(
                f"The photo store at {self.safe_url} cannot be reached ({action} failed: "
                f"{type(cause or error).__name__}). Check that it is running and that STORE_URL is right."
            )
        if isinstance(error, OperationalError):
            # Without a transport cause: the server kept answering 429/503/504, or a stream broke midway.
            return StoreUnavailable(
                f"The photo store at {self.safe_url} is unavailable ({action}): {server_message(error)}"
            )
        if isinstance(error, DatabaseError):
            result = StoreError(f"The photo store refused the {action}: {server_message(error)}")
            result.server_code = getattr(error, "code", None)  # type: ignore[attr-defined]
            return result
        return StoreError(f"The photo store {action} failed: {type(error).__name__}: {error}")

    def query(self, action: str, sql: str, params: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None):
        try:
            return self.client().query(sql, parameters=params or {}, settings=settings or None)
        except Exception as error:  # noqa: BLE001
            raise self.translate(error, action) from error

    def command(self, action: str, sql: str, params: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None):
        try:
            return self.client().command(sql, parameters=params or {}, settings=settings or None)
        except Exception as error:  # noqa: BLE001
            raise self.translate(error, action) from error

    def insert(self, action: str, table: str, columns: list[list[Any]], names: list[str], types: list[str],
               settings: dict[str, Any] | None = None):
        try:
            # Types given up front spare the driver a DESCRIBE round trip per insert.
            return self.client().insert(table, columns, column_names=names, database=self.database,
                                        column_type_names=types, column_oriented=True, settings=settings or None)
        except Exception as error:  # noqa: BLE001
            raise self.translate(error, action) from error

    def read_rows(self, action: str, sql: str, params: dict[str, Any] | None = None) -> list:
        """Rows of a read; before the first ingest there is no table, which reads as no rows."""
        try:
            return self.query(action, sql, params).result_rows
        except StoreError as error:
            if is_unknown_table(error):
                return []
            raise

    def ping(self) -> bool:
        """True when the server answers; never raises."""
        try:
            return bool(self.client().ping())
        except Exception:  # noqa: BLE001 - a health check reports, it does not fail
            logger.debug("store ping failed", exc_info=True)
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                logger.debug("closing a store client failed", exc_info=True)
        self._local = threading.local()
