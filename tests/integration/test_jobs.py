"""JobStore against a real Redis: counting once per batch, states, failures by reason with their records,
paging, rate and ETA, expiry."""
from __future__ import annotations

import uuid

import pytest
import redis

from services.common.errors import DependencyUnavailable
from services.common.jobs import BATCH_COUNTED, BATCH_REPEATED, FAILURES_SHOWN, JOB_DONE, JobStore
from tests.support import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server; a Redis that cannot start fails the tests rather than skipping them."""
    with redis_server(tmp_path_factory.mktemp("jobs")) as url:
        yield url


@pytest.fixture
def jobs(redis_url):
    prefix = f"test-jobs-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    store = JobStore(redis_url, ttl_seconds=600, key_prefix=prefix)
    yield store
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    store.close()


def failure(i: int) -> dict:
    return {"photo_id": f"p{i}", "url": f"http://x.test/{i}", "code": "http_404", "reason": "gone"}


def test_a_job_goes_from_queued_to_running_to_done(jobs):
    job_id = jobs.create()
    assert jobs.get(job_id)["state"] == "queued"
    jobs.add_batches(job_id, batches=2, photos=5)
    assert jobs.finish_batch(job_id, "b1", succeeded=2, skipped=1, failures=[])
    job = jobs.get(job_id)
    assert (job["state"], job["batches_done"], job["batches_total"]) == ("running", 1, 2)
    assert jobs.finish_batch(job_id, "b2", succeeded=1, skipped=0, failures=[failure(1)])
    job = jobs.get(job_id)
    assert job["state"] == "done"
    assert (job["total"], job["succeeded"], job["skipped"], job["failed"]) == (5, 3, 1, 1)
    assert job["failures"] == [failure(1)]
    assert job["updated_at"] >= job["created_at"] > 0


def test_a_retried_batch_counts_once(jobs):
    job_id = jobs.create("my-job")
    assert job_id == "my-job"
    jobs.add_batches(job_id, 2, 4)
    assert jobs.finish_batch(job_id, "b1", 2, 0, [])
    assert not jobs.finish_batch(job_id, "b1", 2, 0, [])
    job = jobs.get(job_id)
    assert (job["succeeded"], job["batches_done"], job["state"]) == (2, 1, "running")


def test_a_job_that_grows_is_not_done_until_the_new_batches_are(jobs):
    job_id = jobs.create()
    jobs.add_batches(job_id, 1, 2)
    jobs.finish_batch(job_id, "b1", 2, 0, [])
    assert jobs.get(job_id)["state"] == "done"
    jobs.add_batches(job_id, 1, 2)
    assert jobs.get(job_id)["state"] == "running"
    jobs.finish_batch(job_id, "b2", 2, 0, [])
    job = jobs.get(job_id)
    assert (job["state"], job["total"], job["succeeded"]) == ("done", 4, 4)
    # Creating an existing id again leaves it as it is.
    jobs.create(job_id)
    assert jobs.get(job_id)["succeeded"] == 4


def test_failures_are_kept_with_records_counted_by_reason_and_paged(jobs, monkeypatch):
    job_id = jobs.create()
    jobs.add_batches(job_id, 2, 60)
    photos = [{"photo_id": f"p{i}", "photo_image_url": f"http://x.test/{i}"} for i in range(60)]
    first = [failure(i) for i in range(25)]
    second = [failure(i) | {"code": "not_an_image"} for i in range(30, 40)]
    jobs.finish_batch(job_id, "b1", 5, 0, first, photos[:30])
    jobs.finish_batch(job_id, "b2", 20, 0, second, photos[30:])
    job = jobs.get(job_id)
    assert job["failed"] == 35 and job["failures_by_reason"] == {"http_404": 25, "not_an_image": 10}
    assert list(job["failures_by_reason"]) == ["http_404", "not_an_image"]  # most first
    assert len(job["failures"]) == FAILURES_SHOWN and "record" not in job["failures"][0]
    total, page = jobs.failures(job_id, offset=20, limit=10)
    assert total == 35 and [f["photo_id"] for f in page] == [f"p{i}" for i in range(20, 25)] + ["p30", "p31", "p32",
                                                                                                   "p33", "p34"]
    assert page[0]["record"] == photos[20] and page[0]["reason"] == "gone"
    records = jobs.failed_records(job_id)
    assert [r["photo_id"] for r in records] == [f"p{i}" for i in range(25)] + [f"p{i}" for i in range(30, 40)]
    # Past the safety bound the counts stay exact while the list stops growing.
    monkeypatch.setattr("services.common.jobs.MAX_FAILURES", 40)
    jobs.add_batches(job_id, 1, 10)
    jobs.finish_batch(job_id, "b3", 0, 0, [failure(i) for i in range(50, 60)], photos[50:])
    assert jobs.failures(job_id, 0, 1)[0] == 40 and jobs.get(job_id)["failures_by_reason"]["http_404"] == 35


def test_rate_and_eta_follow_the_processed_photos(jobs):
    job_id = jobs.create()
    jobs.add_batches(job_id, 2, 100)
    job = jobs.get(job_id)
    assert job["rate"] == 0 and job["eta_s"] is None
    jobs.finish_batch(job_id, "b1", 50, 0, [])
    job = jobs.get(job_id)
    assert job["rate"] > 0 and job["eta_s"] == pytest.approx(50 / job["rate"], abs=0.01)
    jobs.finish_batch(job_id, "b2", 50, 0, [])
    job = jobs.get(job_id)
    assert job["state"] == "done" and job["eta_s"] == 0 and job["rate"] > 0


def test_a_retry_names_the_job_it_retries(jobs):
    first = jobs.create()
    assert "retry_of" not in jobs.get(first)
    assert jobs.get(jobs.create(retry_of=first))["retry_of"] == first


def test_keys_expire_and_unknown_jobs_are_none(jobs, redis_url):
    job_id = jobs.create()
    jobs.add_batches(job_id, 1, 1)
    jobs.finish_batch(job_id, "b1", 0, 0, [failure(0)])
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{jobs._prefix}job:{job_id}*"))
    assert len(keys) == 4 and all(0 < client.ttl(key) <= 600 for key in keys)
    assert jobs.get("no-such-job") is None
    assert jobs.ping()


def test_an_unreachable_redis_is_a_dependency_error():
    store = JobStore("redis://127.0.0.1:1/0")
    assert not store.ping()
    with pytest.raises(DependencyUnavailable, match="Redis"):
        store.get("x")


def test_exactly_one_of_many_finishing_batches_is_told_the_job_is_done(jobs):
    from concurrent.futures import ThreadPoolExecutor

    job_id = jobs.create()
    jobs.add_batches(job_id, batches=24, photos=24)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda i: jobs.finish_batch(job_id, f"b{i}", 1, 0, []), range(24)))
    assert outcomes.count(JOB_DONE) == 1 and outcomes.count(BATCH_COUNTED) == 23
    assert jobs.finish_batch(job_id, "b3", 1, 0, []) == BATCH_REPEATED
    assert jobs.get(job_id)["state"] == "done"
