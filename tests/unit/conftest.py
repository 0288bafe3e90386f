"""Fixtures of the gateway's unit tests (tests/unit/test_api_*.py): its fake adapters and a client."""
from __future__ import annotations

import pytest

from tests.unit.api_support import GatewayFakes, gateway_client


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


@pytest.fixture
def client(fakes):
    with gateway_client(fakes) as test_client:
        yield test_client
