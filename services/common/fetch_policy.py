"""Which addresses an image fetch may reach: the policy part of fetch.py, kept apart from the HTTP.

- Public addresses are fetchable; loopback, private, link-local and reserved ones only when
  FETCH_ALLOW_HOSTS names the host, a network holding the address, or either with a port
  (`127.0.0.1:8091`, `images.lan:8080`, `[::1]:8091`, `10.0.0.0/8:8091`), so a user can allow
  their image server without allowing every service on that machine.
- Denied endpoints (`FetchPolicy.deny_urls`: the store's own address, from STORE_URL) are never
  fetchable, whatever the allow-list says: the store answers SQL over HTTP GET, and a photo URL
  must not become a way to query it. The denial covers the endpoint's port on its host name and on
  its addresses, and on every loopback address when the store is on loopback or listens on all
  addresses (any of them reaches it).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(Exception):
    """One URL could not be fetched; `code` is stable (`blocked_address`, `http_404`, `too_large`,
    `timeout`, `not_an_image`, ...), `str()` a sentence."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        return str(self)


@dataclass(frozen=True)
class FetchPolicy:
    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 15.0
    max_redirects: int = 3
    deny_urls: tuple[str, ...] = ()  # never fetchable (the store's URL), whatever allow_hosts says


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port`, `v6`, `net/len:port` -> (host or network, port or None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _allowed(policy: FetchPolicy) -> tuple[set[tuple[str, int | None]], list[tuple[Network, int | None]]]:
    names: set[tuple[str, int | None]] = set()
    networks: list[tuple[Network, int | None]] = []
    for entry in policy.allow_hosts:
        host, port = _split_port(entry.strip().lower())
        if not host:
            continue
        try:
            networks.append((ipaddress.ip_network(host, strict=False), port))
        except ValueError:
            names.add((host, port))
    return names, networks


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or FetchError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError("invalid_url", f"The URL {url!r} is not valid: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("unsupported_scheme",
                         f"Only http and https URLs can be fetched; {url!r} uses {scheme or 'no scheme'!r}.")
    host = (parts.hostname or "").lower()
    if not host:
        raise FetchError("invalid_url", f"The URL {url!r} has no host.")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_public(address: Address) -> bool:
    return address.is_global and not address.is_multicast


def _denied_endpoint(host: str, port: int, addresses: list[Address], policy: FetchPolicy) -> str | None:
    """The denied URL that (host, port, addresses) would reach, if any."""
    for url in policy.deny_urls:
        try:
            _, deny_host, deny_port = parse_url(url)
        except FetchError:
            continue
        if deny_port != port:
            continue
        if deny_host == host:
            return url
        try:
            deny_addresses = {_address(info[4][0]) for info in socket.getaddrinfo(deny_host, deny_port,
                                                                                type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError, ValueError):  # unresolvable here: its name and port are still denied
            deny_addresses = set()
        everywhere = any(a.is_loopback or a.is_unspecified for a in deny_addresses)
        if any(a in deny_addresses or (everywhere and (a.is_loopback or a.is_unspecified)) for a in addresses):
            return url
    return None


def check_addresses(url: str, host: str, port: int, addresses: list[str], policy: FetchPolicy) -> None:
    """Refuse the store's own address always, and non-public addresses unless allowed (see the
    module docstring). Runs before any connection is made, on addresses already resolved."""
    resolved = [_address(text) for text in addresses]
    denied = _denied_endpoint(host, port, resolved, policy)
    if denied is not None:
        raise FetchError("blocked_address",
                         f"Refused to fetch {url!r}: {host}:{port} is the store's own address, which is never "
                         "fetched (FETCH_ALLOW_HOSTS cannot allow it).")
    names, networks = _allowed(policy)
    if (host, None) in names or (host, port) in names:
        return
    for address in resolved:
        if _is_public(address) or any(address in network and allowed_port in (None, port)
                                      for network, allowed_port in networks):
            continue
        raise FetchError(
            "blocked_address",
            f"Refused to fetch {url!r}: {host} resolves to {address}, a loopback, private, link-local or "
            f"reserved address (add the host, host:port or its network to FETCH_ALLOW_HOSTS to allow it).",
        )
