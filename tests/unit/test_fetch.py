"""Safe fetching against a local HTTP server: images, 404s, HTML, size and time limits, blocked addresses."""
from __future__ import annotations

import asyncio
import http.server
import io
import socket
import threading
import time

import pytest
from PIL import Image

from services.common.fetch import FetchError, FetchPolicy, fetch_bytes, fetch_bytes_async, fetch_many


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", content_type="image/jpeg", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/img.jpg":
            self._send(200, JPEG)
        elif self.path == "/page.html":
            self._send(200, b"<!doctype html><html><body>hello</body></html>", "text/html; charset=utf-8")
        elif self.path == "/big.jpg":
            # No Content-Length: the limit must hold while streaming.
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                self.wfile.write(JPEG[:3] + b"\0" * 300_000)
            except OSError:
                pass
        elif self.path == "/to-ip":
            self._send(302, headers={"Location": f"http://127.0.0.1:{port}/img.jpg"})
        elif self.path == "/relative":
            self._send(301, headers={"Location": "/img.jpg"})
        elif self.path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif self.path == "/slow.jpg":
            time.sleep(1.5)
            self._send(200, JPEG)
        else:
            self._send(404, b"not here", "text/plain")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def policy(**overrides) -> FetchPolicy:
    options = {"allow_hosts": ("127.0.0.1",), "timeout_s": 5.0, "max_bytes": 100_000}
    options.update(overrides)
    return FetchPolicy(**options)


def code_of(url: str, fetch_policy: FetchPolicy) -> tuple[str, str]:
    with pytest.raises(FetchError) as info:
        fetch_bytes(url, fetch_policy)
    return info.value.code, str(info.value)


def test_an_allowed_local_jpeg_is_downloaded(server):
    assert fetch_bytes(f"http://127.0.0.1:{server}/img.jpg", policy()) == JPEG


def test_loopback_is_refused_unless_allowed(server):
    code, message = code_of(f"http://127.0.0.1:{server}/img.jpg", policy(allow_hosts=()))
    assert code == "blocked_address" and "FETCH_ALLOW_HOSTS" in message
    # A network in CIDR form allows it too.
    assert fetch_bytes(f"http://127.0.0.1:{server}/img.jpg", policy(allow_hosts=("127.0.0.0/8",))) == JPEG


def test_a_redirect_to_a_loopback_address_is_checked_again(server):
    # The first hop is allowed by name; its redirect goes to an address that is not allowed.
    code, message = code_of(f"http://localhost:{server}/to-ip", policy(allow_hosts=("localhost",)))
    assert code == "blocked_address" and "127.0.0.1" in message
    assert fetch_bytes(f"http://localhost:{server}/to-ip", policy(allow_hosts=("localhost", "127.0.0.1"))) == JPEG


def test_relative_redirects_are_followed_and_loops_stop(server):
    assert fetch_bytes(f"http://127.0.0.1:{server}/relative", policy()) == JPEG
    code, _ = code_of(f"http://127.0.0.1:{server}/loop", policy(max_redirects=2))
    assert code == "too_many_redirects"


def test_404_html_too_large_and_bad_schemes_are_explained(server):
    code, message = code_of(f"http://127.0.0.1:{server}/nothing.jpg", policy())
    assert code == "http_404" and "404" in message
    code, message = code_of(f"http://127.0.0.1:{server}/page.html", policy())
    assert code == "not_an_image" and "text/html" in message
    code, message = code_of(f"http://127.0.0.1:{server}/big.jpg", policy())
    assert code == "too_large" and "100000" in message
    assert code_of("file:///etc/passwd", policy())[0] == "unsupported_scheme"
    assert code_of("http://169.254.169.254/latest/meta-data", policy())[0] == "blocked_address"
    assert code_of("http://10.1.2.3/x.jpg", policy())[0] == "blocked_address"


def test_a_slow_server_times_out(server):
    started = time.monotonic()
    code, message = code_of(f"http://127.0.0.1:{server}/slow.jpg", policy(timeout_s=0.3))
    assert code == "timeout" and "0.3" in message
    assert time.monotonic() - started < 1.4


def test_fetch_many_returns_one_result_per_url_in_order(server):
    base = f"http://127.0.0.1:{server}"
    results = fetch_many([f"{base}/img.jpg", f"{base}/missing", f"{base}/page.html", f"{base}/img.jpg"],
                         policy(), concurrency=4)
    assert results[0] == JPEG and results[3] == JPEG
    assert [r.code for r in results[1:3]] == ["http_404", "not_an_image"]
    assert fetch_many([], policy()) == []


def test_the_async_fetch_applies_the_same_rules(server):
    base = f"http://127.0.0.1:{server}"
    assert asyncio.run(fetch_bytes_async(f"{base}/img.jpg", policy())) == JPEG
    with pytest.raises(FetchError) as info:
        asyncio.run(fetch_bytes_async(f"http://localhost:{server}/to-ip", policy(allow_hosts=("localhost",))))
    assert info.value.code == "blocked_address"
    with pytest.raises(FetchError) as info:
        asyncio.run(fetch_bytes_async(f"{base}/slow.jpg", policy(timeout_s=0.3)))
    assert info.value.code == "timeout"


class Rebinding:
    """A resolver that answers a public address to the first look-up of a name and loopback after:
    what a DNS-rebinding attacker's server does."""

    def __init__(self, real):
        self.real = real
        self.lookups = 0

    def __call__(self, host, port, *args, **kwargs):
        if host != "rebind.example":
            return self.real(host, port, *args, **kwargs)
        self.lookups += 1
        address = "93.184.216.34" if self.lookups == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


class Counting(Handler):
    hits = 0
    hosts: list[str] = []

    def do_GET(self):
        type(self).hits += 1
        type(self).hosts.append(self.headers["Host"])
        super().do_GET()


@pytest.fixture
def counted_server():
    Counting.hits, Counting.hosts = 0, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(counted_server, monkeypatch):
    from services.common import fetch

    resolver = Rebinding(socket.getaddrinfo)
    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolver)
    code, message = code_of(f"http://rebind.example:{counted_server}/img.jpg", policy(allow_hosts=()))
    assert code == "blocked_address" and "127.0.0.1" in message
    assert resolver.lookups == 2 and Counting.hits == 0


def test_the_async_client_refuses_a_rebinding_name_too(counted_server, monkeypatch):
    resolver = Rebinding(socket.getaddrinfo)

    async def resolve(host, port, **kwargs):
        return resolver(host, port, **kwargs)

    async def fetch_it():
        asyncio.get_running_loop().getaddrinfo = resolve
        return await fetch_bytes_async(f"http://rebind.example:{counted_server}/img.jpg", policy(allow_hosts=()))

    with pytest.raises(FetchError) as info:
        asyncio.run(fetch_it())
    assert info.value.code == "blocked_address" and "127.0.0.1" in str(info.value)
    assert resolver.lookups == 2 and Counting.hits == 0


def test_the_connection_goes_to_the_checked_address(counted_server, monkeypatch):
    # The name resolves (here, to loopback, which is allowed): the request reaches the server, and
    # the Host header still names the host, not the address.
    from services.common import fetch

    resolver = Rebinding(socket.getaddrinfo)
    resolver.lookups = 1  # every look-up now answers loopback
    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolver)
    assert fetch_bytes(f"http://rebind.example:{counted_server}/img.jpg", policy()) == JPEG
    assert Counting.hits == 1 and Counting.hosts == [f"rebind.example:{counted_server}"]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An https server on 127.0.0.1 whose self-signed certificate names `localhost` only."""
    import ssl
    import subprocess

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert), "-days", "1"],
                   check=True, capture_output=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cert
    httpd.shutdown()


def test_https_checks_the_certificate_against_the_host_name_not_the_address(tls_server, monkeypatch):
    # The connection is made to the checked address; TLS must still verify the name in the URL.
    import ssl

    from services.common import fetch

    port, cert = tls_server
    allowed = policy(allow_hosts=("127.0.0.1", "localhost"))
    code, message = code_of(f"https://localhost:{port}/img.jpg", allowed)
    assert code == "network_error" and "CERTIFICATE_VERIFY_FAILED" in message  # not a public CA's
    real_options = fetch._pool_options
    monkeypatch.setattr(fetch, "_pool_options",
                        lambda: real_options() | {"ssl_context": ssl.create_default_context(cafile=str(cert))})
    assert fetch_bytes(f"https://localhost:{port}/img.jpg", allowed) == JPEG
    assert asyncio.run(fetch_bytes_async(f"https://localhost:{port}/img.jpg", allowed)) == JPEG
    code, message = code_of(f"https://127.0.0.1:{port}/img.jpg", allowed)
    assert code == "network_error" and "127.0.0.1" in message  # the certificate names localhost only


def test_the_allow_list_can_name_a_host_and_port(counted_server):
    # Allowing the image server on one loopback port allows that port only.
    only_that_port = policy(allow_hosts=(f"127.0.0.1:{counted_server}",))
    assert fetch_bytes(f"http://127.0.0.1:{counted_server}/img.jpg", only_that_port) == JPEG
    assert fetch_bytes(f"http://localhost:{counted_server}/img.jpg", policy(allow_hosts=(f"localhost:{counted_server}",)))
    code, message = code_of(f"http://127.0.0.1:{counted_server}/img.jpg", policy(allow_hosts=("127.0.0.1:1",)))
    assert code == "blocked_address" and "host:port" in message
    assert Counting.hits == 2


@pytest.mark.parametrize(("allow", "host", "port", "allowed"), [
    ("127.0.0.1:8091", "127.0.0.1", 8091, True),
    ("127.0.0.1:8091", "127.0.0.1", 8123, False),
    ("10.0.0.0/8:8091", "10.1.2.3", 8091, True),
    ("10.0.0.0/8:8091", "10.1.2.3", 22, False),
    ("[::1]:8091", "::1", 8091, True),
    ("[::1]:8091", "::1", 8092, False),
    ("::1", "::1", 8092, True),
    ("images.lan:8080", "images.lan", 8080, True),
    ("images.lan:8080", "images.lan", 8081, False),
])
def test_allow_list_entries_with_ports_before_any_connection(allow, host, port, allowed):
    from services.common.fetch_policy import check_addresses

    address = host if ":" in host or host[0].isdigit() else "192.168.1.20"
    check = lambda: check_addresses(f"http://{host}:{port}/x.jpg", host, port, [address], policy(allow_hosts=(allow,)))  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(FetchError, match="FETCH_ALLOW_HOSTS"):
            check()


def test_the_stores_address_is_never_fetched_whatever_the_allow_list_says(counted_server):
    store = f"http://127.0.0.1:{counted_server}"
    everything = policy(allow_hosts=("127.0.0.0/8", "localhost", f"127.0.0.1:{counted_server}"), deny_urls=(store,))
    for url in (f"{store}/?query=DROP%20TABLE%20photos", f"http://localhost:{counted_server}/",
                f"http://127.0.0.2:{counted_server}/"):
        code, message = code_of(url, everything)
        assert code == "blocked_address" and "store's own address" in message
        with pytest.raises(FetchError, match="store's own address"):
            asyncio.run(fetch_bytes_async(url, everything))
    assert Counting.hits == 0  # refused before any connection
    assert fetch_bytes(f"http://127.0.0.1:{counted_server}/img.jpg", policy(deny_urls=("http://127.0.0.1:8123",))) == JPEG


def test_a_store_behind_a_name_is_denied_on_its_addresses(monkeypatch):
    from services.common import fetch_policy

    def resolver(host, port, *args, **kwargs):  # a stub: nothing is looked up or connected to
        assert host == "store"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(fetch_policy.socket, "getaddrinfo", resolver)
    allowed = policy(allow_hosts=("10.0.0.0/8",), deny_urls=("http://store:8123",))
    with pytest.raises(FetchError, match="store's own address"):
        fetch_policy.check_addresses("http://10.0.0.5:8123/", "10.0.0.5", 8123, ["10.0.0.5"], allowed)
    with pytest.raises(FetchError, match="store's own address"):
        fetch_policy.check_addresses("http://store:8123/", "store", 8123, ["10.0.0.5"], allowed)
    fetch_policy.check_addresses("http://10.0.0.5:8091/", "10.0.0.5", 8091, ["10.0.0.5"], allowed)
    fetch_policy.check_addresses("http://10.0.0.6:8123/", "10.0.0.6", 8123, ["10.0.0.6"], allowed)
