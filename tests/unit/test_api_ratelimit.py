"""Unit tests of the gateway's rate limits (counted in memory here; tests/integration/test_ratelimit_redis.py
counts in a real Redis shared by two gateways): 429 with Retry-After and a sentence, per key or address."""
from __future__ import annotations

import pytest

from services.api.ratelimit import parse_limit
from services.common.errors import BadRequest
from tests.unit.api_support import KEY, PHOTOS, GatewayFakes, error_of, gateway_client


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


def test_reads_over_the_limit_are_429_with_retry_after(fakes):
    with gateway_client(fakes, rate_limit="3/minute", rate_limit_storage="memory://") as client:
        statuses = [client.post("/v1/search", json={"text": "red"}).status_code for _ in range(3)]
        refused = client.get("/v1/stats")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = error_of(refused)
    assert error["code"] == "rate_limited"
    assert "3 reads per minute per client address" in error["message"] and "try again in" in error["message"]


def test_each_api_key_has_its_own_count_and_made_up_keys_do_not(fakes):
    with gateway_client(fakes, rate_limit="2/minute", rate_limit_storage="memory://") as client:
        anonymous = [client.get("/v1/stats").status_code for _ in range(3)]
        keyed = [client.get("/v1/stats", headers={"X-API-Key": KEY}).status_code for _ in range(3)]
        made_up = client.get("/v1/stats", headers={"X-API-Key": "invented"}).status_code
    assert anonymous == [200, 200, 429]
    assert keyed == [200, 200, 429]
    assert made_up == 429  # counted with its address, which is spent


def test_writes_have_their_own_limit(fakes):
    with gateway_client(fakes, rate_limit="100/minute", write_rate_limit="1/minute",
                        rate_limit_storage="memory://") as client:
        body = {"photos": PHOTOS[:2]}
        first = client.post("/v1/ingest", json=body, headers={"X-API-Key": KEY})
        second = client.post("/v1/ingest", json=body, headers={"X-API-Key": KEY})
        read = client.get("/v1/stats")
    assert first.status_code == 202, first.text
    assert second.status_code == 429 and "1 writes per minute per API key" in error_of(second)["message"]
    assert read.status_code == 200


def test_no_limit_when_unset(fakes):
    with gateway_client(fakes, rate_limit_storage="memory://") as client:
        assert {client.get("/v1/stats").status_code for _ in range(30)} == {200}


def test_a_bad_limit_names_the_setting():
    with pytest.raises(BadRequest, match="API_RATE_LIMIT='lots' is not a rate limit"):
        parse_limit("lots", "API_RATE_LIMIT")
