"""Rate limits counted in a real Redis: two gateways share one count, and a Redis outage lets requests
through (fail open) instead of refusing every search."""
from __future__ import annotations

import logging

from tests.support import free_port, redis_server
from tests.unit.api_support import GatewayFakes, error_of, gateway_client


def test_two_gateways_share_one_count_in_redis(tmp_path):
    with redis_server(tmp_path) as redis_url:
        settings = {"rate_limit": "4/minute", "redis_url": redis_url}
        with gateway_client(GatewayFakes(), **settings) as one, gateway_client(GatewayFakes(), **settings) as two:
            statuses = [client.get("/v1/stats").status_code for client in (one, two, one, two)]
            refused = two.post("/v1/search", json={"text": "red"})
    assert statuses == [200, 200, 200, 200]
    assert refused.status_code == 429 and error_of(refused)["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_reads_go_through_when_redis_is_down(caplog):
    # A port nobody listens on: the count cannot be kept.
    settings = {"rate_limit": "1/minute", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    with caplog.at_level(logging.WARNING), gateway_client(GatewayFakes(), **settings) as client:
        statuses = [client.get("/v1/stats").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert sum("rate limits not counted" in record.getMessage() for record in caplog.records) == 1
