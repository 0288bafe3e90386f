"""SSRF targets for `image_url` and photo downloads, refused before any connection opens.

Names resolve through a stub resolver (numeric spellings through the system's numeric-only
parsing, which does no lookup); every TCP connection the fetcher attempts is recorded, and a test
fails if one goes anywhere but the loopback server it started. The redirect case follows a local
server's redirect to the metadata address: the fetcher must refuse the target without connecting.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest

from services.common import fetch
from services.common.fetch import FetchError, FetchPolicy, fetch_bytes, fetch_bytes_async

NAMES = {
    "metadata.google.internal": ["169.254.169.254"],
    "metadata.aws.test": ["fd00:ec2::254"],
    "intranet.test": ["10.1.2.3"],
    # A name with a public and a private address (DNS rebinding): one bad address is enough to refuse.
    "rebind.test": ["93.184.216.34", "192.168.0.10"],
    "localhost": ["127.0.0.1", "::1"],
    "localhost.localdomain": ["127.0.0.1"],
}

TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.aws.test/latest/meta-data/",
    "http://10.0.0.1/a.jpg",
    "http://172.16.5.4/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://100.64.0.1/a.jpg",          # carrier-grade NAT, not global
    "http://intranet.test/a.jpg",
    "http://rebind.test/a.jpg",
    "http://localhost/a.jpg",
    "http://localhost.localdomain:8123/?query=SELECT%201",
    "http://127.0.0.1:6379/",
    "http://127.1/a.jpg",
    "http://2130706433/a.jpg",          # 127.0.0.1 as one decimal number
    "http://0177.0.0.1/a.jpg",          # octal
    "http://0x7f.1/a.jpg",              # hexadecimal, short form
    "http://0.0.0.0:8000/v1/stats",
    "http://[::1]/a.jpg",
    "http://[::ffff:127.0.0.1]/a.jpg",  # IPv6-mapped IPv4
    "http://[::ffff:169.254.169.254]/a.jpg",
]


_REAL_GETADDRINFO = socket.getaddrinfo


def _stub_getaddrinfo(host, port, *args, **kwargs):
    host = host.decode() if isinstance(host, bytes) else host
    if host in NAMES:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in NAMES[host]]
    # Numeric spellings only: AI_NUMERICHOST parses, never looks up.
    return _REAL_GETADDRINFO(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


@pytest.fixture
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Every TCP connection the fetcher tries; only loopback ones are let through."""
    attempts: list[tuple[str, int]] = []
    real_sync = httpcore.SyncBackend.connect_tcp
    real_async = httpcore.AnyIOBackend.connect_tcp

    def sync_connect(self, host, port, *args, **kwargs):
        attempts.append((host, port))
        assert host == "127.0.0.1", f"the fetcher tried to connect to {host}:{port}"
        return real_sync(self, host, port, *args, **kwargs)

    async def async_connect(self, host, port, *args, **kwargs):
        attempts.append((host, port))
        assert host == "127.0.0.1", f"the fetcher tried to connect to {host}:{port}"
        return await real_async(self, host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", _stub_getaddrinfo)
    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", sync_connect)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", async_connect)

    async def stub_loop_getaddrinfo(self, host, port, **kwargs):
        return _stub_getaddrinfo(host, port)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", stub_loop_getaddrinfo)
    return attempts


@pytest.mark.parametrize("url", TARGETS)
def test_private_and_metadata_targets_are_refused_before_connecting(url, connections):
    policy = FetchPolicy(timeout_s=2)
    with pytest.raises(FetchError) as sync_error:
        fetch_bytes(url, policy)
    with pytest.raises(FetchError) as async_error:
        asyncio.run(fetch_bytes_async(url, policy))
    assert sync_error.value.code == async_error.value.code == "blocked_address", str(sync_error.value)
    assert "FETCH_ALLOW_HOSTS" in str(sync_error.value)
    assert connections == []


class _Redirect(BaseHTTPRequestHandler):
    target = "http://169.254.169.254/latest/meta-data/"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
                                    "http://10.0.0.1/", "http://[::ffff:169.254.169.254]/"])
def test_a_redirect_to_a_forbidden_address_is_refused_before_connecting(target, connections):
    handler = type("Redirect", (_Redirect,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        # The first hop is allowed by name: only the redirect's target is forbidden.
        policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=2)
        with pytest.raises(FetchError) as error:
            fetch_bytes(f"http://127.0.0.1:{port}/photo.jpg", policy)
        with pytest.raises(FetchError) as async_error:
            asyncio.run(fetch_bytes_async(f"http://127.0.0.1:{port}/photo.jpg", policy))
    finally:
        server.shutdown()
        server.server_close()
    assert error.value.code == async_error.value.code == "blocked_address", str(error.value)
    assert set(connections) == {("127.0.0.1", port)}
