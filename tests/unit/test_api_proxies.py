"""Unit tests of the gateway behind reverse proxies: X-Forwarded-For names the client (for the per-address
rate limit) only when it comes from an address in API_TRUSTED_PROXIES; the right-most address of the chain
that is not a trusted proxy is the client, so a client cannot choose its own address by sending the header."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from tests.unit.api_support import GatewayFakes, make_settings

PROXY = "10.0.0.5"


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


@contextmanager
def gateway_from(fakes: GatewayFakes, peer: str, **settings):
    """The gateway as a client at `peer` reaches it (a proxy, or a client directly)."""
    app = create_app(make_settings(rate_limit="2/minute", rate_limit_storage="memory://", **settings),
                     services=fakes.services())
    with TestClient(app, client=(peer, 40000)) as client:
        yield client


def _statuses(client, forwarded_for: str, times: int = 3) -> list[int]:
    return [client.get("/v1/stats", headers={"X-Forwarded-For": forwarded_for}).status_code for _ in range(times)]


def test_clients_behind_a_trusted_proxy_are_counted_apart(fakes):
    with gateway_from(fakes, PROXY, trusted_proxies="10.0.0.0/8, 192.0.2.7") as client:
        assert _statuses(client, "198.51.100.1") == [200, 200, 429]
        assert _statuses(client, "198.51.100.2") == [200, 200, 429]
        # A chain through two proxies: the right-most address that is not a trusted proxy is the client,
        # whatever the client wrote in front of it.
        assert _statuses(client, "1.2.3.4, 198.51.100.3, 192.0.2.7") == [200, 200, 429]
        assert _statuses(client, "5.6.7.8, 198.51.100.3, 192.0.2.7", times=1) == [429]


def test_the_header_from_an_untrusted_peer_is_ignored(fakes):
    with gateway_from(fakes, "203.0.113.9", trusted_proxies="10.0.0.0/8") as client:
        statuses = [client.get("/v1/stats", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                    for i in range(3)]
    assert statuses == [200, 200, 429]


def test_without_trusted_proxies_the_header_is_ignored(fakes):
    with gateway_from(fakes, PROXY) as client:
        statuses = [client.get("/v1/stats", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                    for i in range(3)]
    assert statuses == [200, 200, 429]


def test_a_bad_trusted_proxy_names_the_setting():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="API_TRUSTED_PROXIES"):
        make_settings(trusted_proxies="10.0.0.0/8, proxy.example")
    # A network written with its host bits set means the network, not nothing.
    assert make_settings(trusted_proxies="10.1.2.3/8").trusted_proxy_list == ["10.0.0.0/8"]
