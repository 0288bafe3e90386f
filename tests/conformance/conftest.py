"""The store conformance suite: the clickhouse-connect calls this project makes, against any server.

    CONFORMANCE_STORE_URL=http://user:password@host:8123 pytest tests/conformance

runs them against that server (a ClickHouse or MyScale of your own); without the variable they run
against the embedded store, started on a free port with a temporary data folder. Everything is
created in a database of its own (`conformance_<random>`), dropped at the end, so a shared server
is safe to use. Tests marked `server_may_differ` check behaviour where a real server may
legitimately answer otherwise (its version or flavour); they say why in their reason.
"""
from __future__ import annotations

import os
import secrets
from urllib.parse import urlparse, urlunparse

import clickhouse_connect
import pytest

from tests.support import free_port, service_process

URL_VARIABLE = "CONFORMANCE_STORE_URL"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "server_may_differ(reason): behaviour a real ClickHouse or MyScale may legitimately differ on")


def pytest_collection_modifyitems(config, items):
    # Under a real server, a `server_may_differ` failure is reported as an expected difference.
    if not os.environ.get(URL_VARIABLE):
        return
    for item in items:
        marker = item.get_closest_marker("server_may_differ")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "server may differ")
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


def _without_secrets(url: str) -> str:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    return urlunparse(parsed._replace(netloc=f"{host}:{parsed.port}" if parsed.port else host))


@pytest.fixture(scope="session")
def store_url(tmp_path_factory) -> str:
    """The server's URL: CONFORMANCE_STORE_URL, or an embedded store of this test run."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    root = tmp_path_factory.mktemp("conformance-store")
    port = free_port()
    args = ["-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(root / "data")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with service_process(args, f"http://127.0.0.1:{port}/ping", root / "store.log", env=env, timeout=60):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def is_embedded() -> bool:
    return not os.environ.get(URL_VARIABLE)


@pytest.fixture(scope="session")
def database(store_url) -> str:
    """A database of this run's own, dropped afterwards."""
    name = f"conformance_{secrets.token_hex(4)}"
    admin = clickhouse_connect.get_client(dsn=store_url, autogenerate_session_id=False)
    admin.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture(scope="session")
def connect(store_url, database):
    """Makes clients as the project's store module does (services/photostore/)."""
    made = []

    def make(**overrides):
        options = dict(database=database, autogenerate_session_id=False, show_clickhouse_errors="scrub",
                       client_name="imagesearch-conformance", connect_timeout=10, send_receive_timeout=120)
        options.update(overrides)
        client = clickhouse_connect.get_client(dsn=store_url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def client(connect):
    return connect()


@pytest.fixture(scope="session")
def server_label(store_url) -> str:
    return _without_secrets(store_url)
