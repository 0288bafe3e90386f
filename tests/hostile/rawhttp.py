"""HTTP spoken by hand over a socket, for the requests no client library will send: bodies that
never end, and headers or bodies trickled a byte at a time. Loopback only; every call is bounded."""
from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

CLOSED = "closed"      # the server closed the connection without an answer
OPEN = "still open"    # the server was still waiting when the test gave up


def _connect(url: str, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _status(sock: socket.socket, timeout: float) -> int | str:
    """The status code of the answer waiting on `sock`, or CLOSED."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionError):
        pass
    if data.startswith(b"HTTP/"):
        return int(data.split(b" ", 2)[1])
    return CLOSED


def _answered(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def endless_chunked(url: str, path: str, headers: dict[str, str], give_up_after: int,
                    timeout: float = 10.0) -> int | str:
    """POST a chunked body that would never end: 64 KiB chunks until the server answers or closes,
    or until `give_up_after` bytes were sent (then OPEN: the server read them all and still waited)."""
    sock = _connect(url, timeout)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}", "Transfer-Encoding: chunked",
                 *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunk = b"10000\r\n" + b"A" * 0x10000 + b"\r\n"
        sent = 0
        while sent < give_up_after:
            if _answered(sock):
                return _status(sock, timeout)
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return _status(sock, timeout)
            sent += 0x10000
        # Everything sent and no answer yet: give the server a moment to answer.
        return _status(sock, 2.0) if _answered_within(sock, 2.0) else OPEN
    finally:
        sock.close()


def _answered_within(sock: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def trickle(url: str, head: bytes, trickled: bytes, every: float, budget: float) -> tuple[int | str, float]:
    """Send `head`, then `trickled` one byte every `every` seconds, until the server answers or
    closes (its status or CLOSED) or `budget` seconds pass (OPEN); also how long it took."""
    sock = _connect(url, budget)
    started = time.monotonic()
    try:
        sock.sendall(head)
        for byte in trickled:
            if time.monotonic() - started > budget:
                return OPEN, time.monotonic() - started
            if _answered_within(sock, every):
                return _status(sock, 2.0), time.monotonic() - started
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return _status(sock, 2.0), time.monotonic() - started
        return OPEN, time.monotonic() - started
    finally:
        sock.close()


def wait_silent(url: str, budget: float) -> int | str:
    """Open a connection, send nothing, and wait up to `budget` seconds for the server to end it."""
    sock = _connect(url, budget)
    try:
        if _answered_within(sock, budget):
            return _status(sock, 2.0)
        return OPEN
    finally:
        sock.close()


def raw_request(url: str, data: bytes, timeout: float = 10.0) -> int | str:
    """Send `data` as is (a request line and headers no client would write) and read the status."""
    sock = _connect(url, timeout)
    try:
        sock.sendall(data)
        return _status(sock, timeout)
    finally:
        sock.close()
