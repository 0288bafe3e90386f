"""Fetching images on a user's behalf, safely.

http(s) only; loopback, private, link-local and reserved addresses are refused (also after every
redirect, which is followed by hand) unless the host or a network holding its address is in
FETCH_ALLOW_HOSTS (which may name a port), and the store's own address never (fetch_policy.py);
size and time limits; the body must look like an image. Each failure is a
`FetchError` with a stable code and a sentence a person can act on.

The address is checked twice: once before each request (for a message that names the URL), and
again where the connection is made. The clients' network backend resolves the name itself, checks
every address, and connects to a checked address, never to the name: a DNS server that answers a
public address to the first look-up and a private one to the next (DNS rebinding) gets nowhere.
TLS still verifies the certificate against the host name.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import certifi
import httpcore
import httpx

from services.common.fetch_policy import FetchError, FetchPolicy, check_addresses, parse_url

__all__ = ["FetchError", "FetchPolicy", "fetch_bytes", "fetch_bytes_async", "fetch_many", "make_async_client",
           "make_client", "sniff_image"]

log = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "imagesearch-fetch/0.1"
_CHUNK = 64 * 1024


# --- checks shared by the sync and async paths -------------------------------------------------


def _resolve_sync(host: str, port: int, url: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError("dns_error", f"Could not resolve the host of {url!r}: {exc}.") from None
    return sorted({info[4][0] for info in infos})


async def _resolve_async(host: str, port: int, url: str) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError("dns_error", f"Could not resolve the host of {url!r}: {exc}.") from None
    return sorted({info[4][0] for info in infos})


def _next_url(url: str, response: httpx.Response, hops: int, policy: FetchPolicy) -> str:
    location = response.headers.get("location")
    if not location:
        raise FetchError("bad_redirect", f"{url!r} answered {response.status_code} with no Location header.")
    if hops >= policy.max_redirects:
        raise FetchError("too_many_redirects", f"{url!r} redirected more than {policy.max_redirects} times.")
    return urljoin(url, location)


def _check_status(url: str, response: httpx.Response) -> None:
    if response.status_code != 200:
        raise FetchError(f"http_{response.status_code}",
                         f"{url!r} answered HTTP {response.status_code} {response.reason_phrase}.".replace(" .", "."))


def _check_declared_size(url: str, response: httpx.Response, policy: FetchPolicy) -> None:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(url, policy)


def _too_large(url: str, policy: FetchPolicy) -> FetchError:
    return FetchError("too_large", f"{url!r} is larger than the limit of {policy.max_bytes} bytes.")


def _timeout(url: str, policy: FetchPolicy) -> FetchError:
    return FetchError("timeout", f"{url!r} did not answer within {policy.timeout_s:g} s.")


def _network_error(url: str, exc: Exception) -> FetchError:
    return FetchError("network_error", f"Could not download {url!r}: {exc.__class__.__name__}: {exc}.")


def sniff_image(body: bytes) -> str | None:
    """The image format named by the body's first bytes, or None when it is not a known image."""
    head = body[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
        return head[8:12].decode()
    return None


def _check_image(url: str, body: bytes, content_type: str) -> bytes:
    if sniff_image(body) is None:
        what = content_type.split(";", 1)[0].strip() or "unknown content type"
        raise FetchError("not_an_image", f"{url!r} did not return an image (got {what}, {len(body)} bytes).")
    return body


def _timeouts(policy: FetchPolicy) -> httpx.Timeout:
    return httpx.Timeout(policy.timeout_s, connect=min(policy.timeout_s, 10.0))


# --- connections only to checked addresses -----------------------------------------------------


def _connect_error(host: str, port: int, error: Exception | None) -> Exception:
    return error or httpcore.ConnectError(f"{host}:{port} has no address to connect to")


class _CheckedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, but a TCP connection goes only to an address that the policy allows,
    resolved here: the name is never handed to the socket layer to resolve again."""

    def __init__(self, policy: FetchPolicy):
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        where = f"{host}:{port}"
        addresses = _resolve_sync(host, port, where)
        check_addresses(where, host, port, addresses, self._policy)
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise _connect_error(host, port, error)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("fetching over a unix socket is not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncCheckedBackend(httpcore.AsyncNetworkBackend):
    """The same, for the async client."""

    def __init__(self, policy: FetchPolicy):
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        where = f"{host}:{port}"
        addresses = await _resolve_async(host, port, where)
        check_addresses(where, host, port, addresses, self._policy)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise _connect_error(host, port, error)

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("fetching over a unix socket is not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pool_options() -> dict:
    return {"ssl_context": ssl.create_default_context(cafile=certifi.where()), "max_connections": 100,
            "max_keepalive_connections": 20, "keepalive_expiry": 5.0}


class _CheckedTransport(httpx.HTTPTransport):
    def __init__(self, policy: FetchPolicy):
        super().__init__(trust_env=False)
        # httpx's transport maps requests and errors around its httpcore pool; only the pool's
        # network backend differs (httpx takes no backend argument, so the pool is replaced).
        self._pool = httpcore.ConnectionPool(network_backend=_CheckedBackend(policy), **_pool_options())


class _AsyncCheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: FetchPolicy):
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(network_backend=_AsyncCheckedBackend(policy), **_pool_options())


def make_client(policy: FetchPolicy) -> httpx.Client:
    """A client suited to `fetch_bytes`: no automatic redirects, no proxies from the environment, and
    connections only to addresses the policy allows."""
    return httpx.Client(timeout=_timeouts(policy), follow_redirects=False, trust_env=False,
                        headers={"User-Agent": USER_AGENT}, transport=_CheckedTransport(policy))


def make_async_client(policy: FetchPolicy) -> httpx.AsyncClient:
    """The same, for `fetch_bytes_async`."""
    return httpx.AsyncClient(timeout=_timeouts(policy), follow_redirects=False, trust_env=False,
                             headers={"User-Agent": USER_AGENT}, transport=_AsyncCheckedTransport(policy))


# --- sync --------------------------------------------------------------------------------------


def fetch_bytes(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bytes:
    """Download one URL under the policy (sync); raise FetchError.

    `client`, when given, is reused: one from `make_client` (with another, the address is checked
    only before the request); else one is made.
    """
    if client is None:
        with make_client(policy) as own:
            return fetch_bytes(url, policy, own)
    deadline = time.monotonic() + policy.timeout_s
    current = url
    for hops in range(policy.max_redirects + 1):
        scheme, host, port = parse_url(current)
        check_addresses(current, host, port, _resolve_sync(host, port, current), policy)
        try:
            with client.stream("GET", current, follow_redirects=False) as response:
                if response.status_code in REDIRECT_CODES:
                    current = _next_url(current, response, hops, policy)
                    continue
                _check_status(current, response)
                _check_declared_size(current, response, policy)
                body = bytearray()
                for chunk in response.iter_bytes(_CHUNK):
                    body += chunk
                    # The declared length can lie or be missing: stop reading at the limit.
                    if len(body) > policy.max_bytes:
                        raise _too_large(current, policy)
                    # httpx's timeout is per read; a server trickling bytes needs a total deadline.
                    if time.monotonic() > deadline:
                        raise _timeout(current, policy)
                return _check_image(current, bytes(body), response.headers.get("content-type", ""))
        except httpx.TimeoutException:
            raise _timeout(current, policy) from None
        except httpx.HTTPError as exc:
            raise _network_error(current, exc) from None
    raise FetchError("too_many_redirects", f"{url!r} redirected more than {policy.max_redirects} times.")


def fetch_many(urls: list[str], policy: FetchPolicy, concurrency: int = 16) -> list[bytes | FetchError]:
    """Download concurrently; one result per URL, in order; a failure is returned, not raised.

    Threads rather than an event loop so that this works from any caller, including one that
    already runs a loop; one shared client keeps connections to the same host alive.
    """
    if not urls:
        return []

    with make_client(policy) as client:
        def one(url: str) -> bytes | FetchError:
            try:
                return fetch_bytes(url, policy, client)
            except FetchError as exc:
                return exc
            except Exception as exc:  # a bug must cost one photo, not the whole batch
                log.exception("unexpected error fetching %s", url)
                return FetchError("fetch_failed", f"Could not download {url!r}: {exc.__class__.__name__}.")

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(urls)))) as pool:
            return list(pool.map(one, urls))


# --- async -------------------------------------------------------------------------------------


async def fetch_bytes_async(url: str, policy: FetchPolicy, client: httpx.AsyncClient | None = None) -> bytes:
    """Same as fetch_bytes, for the gateway's event loop."""
    if client is None:
        async with make_async_client(policy) as own:
            return await fetch_bytes_async(url, policy, own)
    try:
        return await asyncio.wait_for(_fetch_async(url, policy, client), timeout=policy.timeout_s)
    except TimeoutError:
        raise _timeout(url, policy) from None


async def _fetch_async(url: str, policy: FetchPolicy, client: httpx.AsyncClient) -> bytes:
    current = url
    for hops in range(policy.max_redirects + 1):
        scheme, host, port = parse_url(current)
        check_addresses(current, host, port, await _resolve_async(host, port, current), policy)
        try:
            async with client.stream("GET", current, follow_redirects=False) as response:
                if response.status_code in REDIRECT_CODES:
                    current = _next_url(current, response, hops, policy)
                    continue
                _check_status(current, response)
                _check_declared_size(current, response, policy)
                body = bytearray()
                async for chunk in response.aiter_bytes(_CHUNK):
                    body += chunk
                    if len(body) > policy.max_bytes:
                        raise _too_large(current, policy)
                return _check_image(current, bytes(body), response.headers.get("content-type", ""))
        except httpx.TimeoutException:
            raise _timeout(current, policy) from None
        except httpx.HTTPError as exc:
            raise _network_error(current, exc) from None
    raise FetchError("too_many_redirects", f"{url!r} redirected more than {policy.max_redirects} times.")
