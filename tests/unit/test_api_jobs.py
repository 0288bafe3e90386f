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


# -- failures and retries --------------------------------------------------------------------------


def _failed_job(fakes, failures: int = 30) -> str:
    job_id = fakes.jobs.create()
    fakes.jobs.add_batches(job_id, 1, len(PHOTOS))
    for i in range(failures):
        record = {"photo_id": f"f{i}", "photo_image_url": f"http://img.test/{i}.jpg", "photo_description": f"n{i}"}
        code = "http_404" if i % 3 else "not_an_image"
        fakes.jobs.fail(job_id, {"photo_id": record["photo_id"], "url": record["photo_image_url"], "code": code,
                                 "reason": f"reason {i}", "record": record})
    fakes.jobs.jobs[job_id]["state"] = "done"
    return job_id


def test_a_job_reports_failures_by_reason_rate_and_eta(client, fakes):
    job = client.get(f"/v1/jobs/{_failed_job(fakes)}").json()
    assert job["failures_by_reason"] == {"http_404": 20, "not_an_image": 10}
    assert len(job["failures"]) == 20 and "record" not in job["failures"][0]
    assert {"rate", "eta_s"} <= set(job)


def test_failures_are_listed_a_page_at_a_time_with_their_records(client, fakes):
    job_id = _failed_job(fakes)
    page = client.get(f"/v1/jobs/{job_id}/failures", params={"offset": 25, "limit": 10}).json()
    assert page["total"] == 30 and [f["photo_id"] for f in page["failures"]] == ["f25", "f26", "f27", "f28", "f29"]
    assert page["failures"][0]["record"]["photo_description"] == "n25" and page["failures"][0]["reason"] == "reason 25"
    assert client.get(f"/v1/jobs/{job_id}/failures", params={"limit": 0}).status_code == 422
    assert client.get("/v1/jobs/nope/failures").status_code == 404


def test_a_retry_queues_only_the_failed_photos_as_a_new_job(client, fakes):
    job_id = _failed_job(fakes, failures=5)
    assert client.post(f"/v1/jobs/{job_id}/retry").status_code == 401
    response = client.post(f"/v1/jobs/{job_id}/retry", params={"batch_size": 2}, headers={"X-API-Key": KEY})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["retry_of"] == job_id and accepted["photos"] == 5 and accepted["batches"] == 3
    assert [p["photo_id"] for p in fakes.queued_photos[accepted["job_id"]]] == ["f0", "f1", "f2", "f3", "f4"]
    retry = client.get(f"/v1/jobs/{accepted['job_id']}").json()
    assert retry["retry_of"] == job_id and retry["total"] == 5


def test_a_job_without_failures_has_nothing_to_retry(client, fakes):
    job_id = _failed_job(fakes, failures=0)
    response = client.post(f"/v1/jobs/{job_id}/retry", headers={"X-API-Key": KEY})
    assert response.status_code == 409 and error_of(response)["code"] == "nothing_to_retry"
    assert "no failed photos" in error_of(response)["message"]
    assert client.post("/v1/jobs/nope/retry", headers={"X-API-Key": KEY}).status_code == 404
