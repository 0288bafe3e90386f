"""Fixtures of the gateway's unit tests (tests/unit/test_api_*.py): its fake adapters and a client."""
from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from services.api.main import create_app
from tests.support import free_port
from tests.unit.api_support import GatewayFakes, gateway_client, make_settings


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


@pytest.fixture
def client(fakes):
    with gateway_client(fakes) as test_client:
        yield test_client


@pytest.fixture
def served_gateway(fakes):
    """The gateway with fake adapters on a real port, so clients speak real HTTP; yields its URL."""
    port = free_port()
    app = create_app(make_settings(), services=fakes.services())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
