"""The store over the ClickHouse HTTP interface, with httpx: the few small queries a backup needs, and
Native bodies streamed out of the server (`SELECT ... FORMAT Native`) and into it (`INSERT ... FORMAT
Native`) without ever holding a table.

Why not clickhouse-connect (the store library's driver): its raw stream API decodes the compression and
hands back blocks through its own buffers; here the compressed bytes go from the socket to the file and
from the file to the socket untouched, in fixed-size chunks, which keeps memory flat and the CPU idle.
The compression is the server's own HTTP compression (`enable_http_compression=1` and zstd), which
ClickHouse, MyScale and the embedded store all speak.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlparse, urlunparse

import httpx

from services.backup.errors import BackupError

CHUNK = 1 << 20
ENCODING = "zstd"


def redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return urlunparse(parsed._replace(netloc=f"{parsed.username or ''}:***@{parsed.hostname}"
                                      + (f":{parsed.port}" if parsed.port else "")))


def quote(name: str) -> str:
    """An identifier for SQL (identifiers cannot be bound parameters)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class StoreHttp:
    """One ClickHouse-compatible server at `url` (`http(s)://user:password@host:port/database`)."""

    def __init__(self, url: str, *, timeout: float = 600):
        parsed = urlparse(url.strip().rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BackupError(f"STORE_URL must be an http(s) URL such as http://127.0.0.1:8123, not {redact(url)!r}.")
        self.safe_url = redact(url)
        self.database = unquote(parsed.path.lstrip("/").split("/")[0]) or "default"
        auth = (unquote(parsed.username or "default"), unquote(parsed.password or "")) if parsed.username else None
        base = urlunparse(parsed._replace(netloc=f"{parsed.hostname}" + (f":{parsed.port}" if parsed.port else ""),
                                          path="/", params="", query="", fragment=""))
        # Long reads and loads: the read timeout is per chunk, so a slow but moving stream never trips it.
        self.client = httpx.Client(base_url=base, auth=auth, timeout=httpx.Timeout(timeout, connect=10))

    def ref(self, table: str) -> str:
        return f"{quote(self.database)}.{quote(table)}"

    def _params(self, params: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        out = {"database": self.database, **extra}
        for name, value in (params or {}).items():
            out[f"param_{name}"] = value
        return out

    def _fail(self, response: httpx.Response, what: str) -> BackupError:
        text = response.read().decode("utf-8", "replace").strip()
        return BackupError(f"The store at {self.safe_url} refused the {what}: {' '.join(text.split())[:500]}")

    def _post(self, what: str, sql: str, params: dict[str, Any] | None = None, **extra: Any) -> httpx.Response:
        try:
            response = self.client.post("/", params=self._params(params, **extra), content=sql.encode())
        except httpx.HTTPError as error:
            raise BackupError(f"The store at {self.safe_url} did not answer the {what} ({error}); "
                              "is it running, and is STORE_URL right?") from error
        if response.status_code != 200:
            raise self._fail(response, what)
        return response

    def rows(self, what: str, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A small result as dicts by column name."""
        response = self._post(what, sql + " FORMAT JSON", params, output_format_json_quote_64bit_integers=0)
        return response.json()["data"]

    def command(self, what: str, sql: str, params: dict[str, Any] | None = None) -> None:
        self._post(what, sql, params)

    @contextmanager
    def stream_out(self, what: str, sql: str) -> Iterator[Iterable[bytes]]:
        """The zstd-compressed result bytes of `sql` as the server sends them, chunk by chunk."""
        request = self.client.build_request(
            "POST", "/", params=self._params(None, enable_http_compression=1), content=sql.encode(),
            headers={"Accept-Encoding": ENCODING})
        try:
            response = self.client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise BackupError(f"The store at {self.safe_url} did not answer the {what} ({error}).") from error
        try:
            if response.status_code != 200:
                raise self._fail(response, what)
            if response.headers.get("content-encoding", "").lower() != ENCODING:
                raise BackupError(f"The store at {self.safe_url} sent the {what} without zstd compression "
                                  f"({response.headers.get('content-encoding') or 'none'}); backups need a server "
                                  "that compresses HTTP answers (enable_http_compression).")
            yield response.iter_raw(CHUNK)
        except httpx.HTTPError as error:
            raise BackupError(f"The store at {self.safe_url} broke off the {what} ({error}).") from error
        finally:
            response.close()

    def stream_in(self, what: str, sql: str, chunks: Iterable[bytes]) -> None:
        """`sql` (an INSERT ... FORMAT X) with the zstd-compressed `chunks` as its data, sent as they are read."""
        # The statement goes in the URL so that the body is the data alone and can stay compressed; a
        # generator body is sent chunked, as it is read.
        request = self.client.build_request("POST", "/", params=self._params(None, query=sql),
                                            content=iter(chunks), headers={"Content-Encoding": ENCODING})
        try:
            response = self.client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise BackupError(f"The store at {self.safe_url} broke off the {what} ({error}).") from error
        try:
            if response.status_code != 200:
                raise self._fail(response, what)
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> StoreHttp:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

