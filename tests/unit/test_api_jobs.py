"""Unit tests of ingestion through the gateway with fake adapters: queuing batches, growing a job,
reading its progress, and what is refused.
"""
from __future__ import annotations

import pytest

from tests.unit.api_support import KEY, PHOTOS, error_of

# -- ingestion and keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers, sentence", [
    ({}, "needs an API key"),
    ({"X-API-Key": "wrong"}, "not one this gateway accepts"),
])
def test_ingest_needs_a_valid_key(client, fakes, headers, sentence):
    response = client.post("/v1/ingest", json={"photos": PHOTOS}, headers=headers)
    assert response.status_code == 401 and sentence in error_of(response)["message"]
    assert fakes.enqueued == []


def test_ingest_queues_batches_and_a_job_can_grow(client, fakes):
    response = client.post("/v1/ingest", json={"photos": PHOTOS, "batch_size": 32}, headers={"X-API-Key": KEY})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["photos"] == 70 and accepted["batches"] == 3
    job = client.get(f"/v1/jobs/{accepted['job_id']}").json()
    assert job["total"] == 70 and job["batches_total"] == 3 and job["state"] == "queued"
    more = client.post("/v1/ingest", json={"photos": PHOTOS[:10], "job_id": accepted["job_id"]},
                       headers={"X-API-Key": KEY}).json()
    assert more == {"job_id": accepted["job_id"], "photos": 10, "batches": 1}
    assert client.get(f"/v1/jobs/{accepted['job_id']}").json()["total"] == 80


def test_ingest_refusals(client):
    headers = {"X-API-Key": KEY}
    response = client.post("/v1/ingest", json={"photos": PHOTOS, "job_id": "nope"}, headers=headers)
    assert response.status_code == 404 and "leave job_id out" in error_of(response)["message"]
    assert client.post("/v1/ingest", json={"photos": []}, headers=headers).status_code == 422
    assert client.post("/v1/ingest", json={"photos": PHOTOS, "batch_size": 0}, headers=headers).status_code == 422
    unknown = client.get("/v1/jobs/nope")
    assert unknown.status_code == 404 and "nope" in error_of(unknown)["message"]
