"""uvicorn's HTTP protocol (httptools) with a deadline on request headers, against slow-loris senders.

uvicorn times out an idle keep-alive connection, but not a request whose headers never end: a
sender trickling a header a byte at a time (or opening a connection and sending nothing) holds the
connection for ever, and a few thousand such sockets exhaust the process. This protocol starts a
timer when a connection opens and when each request begins, stops it when the request's headers are
complete, and answers 408 and closes the connection if it fires first. Header bytes past a limit are
answered 431. (Bodies are bounded inside the app: `services.common.http.BodyGuardMiddleware`.)

Used by the gateway and the embedder: `uvicorn --http services.common.http_protocol:GuardedHttpToolsProtocol`.
uvicorn builds the protocol itself, outside any app, so its two settings are not a service's but
`services.common.config.HttpSettings`, shared by every service that uses it: `HTTP_HEADER_TIMEOUT_S`
(default 10) and `HTTP_MAX_HEADER_BYTES` (default 64 KiB, as ClickHouse and nginx's large buffers
roughly allow), from the environment or `.env`, read once when uvicorn imports this module (so a bad
value stops the server at start, not each connection).
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.config import get_http_settings


def _answer(status: str, message: str) -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s = get_http_settings().header_timeout_s
    max_header_bytes = get_http_settings().max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: str, message: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_answer(status, message))
            self.transport.close()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._refuse("408 Request Timeout",
                     f"The request headers did not arrive within {self.header_timeout_s:g} seconds.")

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._refuse("431 Request Header Fields Too Large",
                         f"The request line and headers exceed {self.max_header_bytes:,} bytes.")

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():  # refused above: ignore what the sender still sends
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        self._disarm()
        # Refused while this data was being parsed: start no request for it.
        if not self.transport.is_closing():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle is not None:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
