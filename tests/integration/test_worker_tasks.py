"""The ingestion task run in this process (Celery's eager `apply`), with its resources opened
explicitly: what a job records when a batch succeeds, when its embedder stays down (retries, then
every photo failed with the reason), and when no resources were opened. Also how the worker's
modules import: no settings read, no cycle between the app and its task.

The job store is a private redis-server; embedder and store are the ports' fakes (tests/fakes.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from services.common.embedder_client import EmbedderBusy, EmbedderUnavailable
from services.common.fetch import FetchPolicy
from services.common.jobs import JobStore
from services.common.queue import TASK_NAME
from services.worker import resources
from services.worker.config import get_settings
from services.worker.resources import Resources
from tests.fakes import DIM, MODEL, FakeEmbedder, FakeStore, image_vector
from tests.integration.worker_support import jpeg
from tests.support import redis_server

ROOT = Path(__file__).resolve().parents[2]


class BusyEmbedder(FakeEmbedder):
    """Answers 503 with a Retry-After of 0 s to the first `busy` image calls, as a saturated embedder does."""

    def __init__(self, busy: int):
        super().__init__()
        self.busy = busy

    def embed_images_each(self, images):
        if self.busy:
            self.busy -= 1
            self.calls.append(("embed_images_each", len(images)))
            raise EmbedderBusy("The embedder at http://127.0.0.1:1 is unavailable: saturated", retry_after=0)
        return super().embed_images_each(images)


def image_calls(embedder: FakeEmbedder) -> int:
    return sum(1 for method, _ in embedder.calls if method == "embed_images_each")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("worker-tasks")) as url:
        yield url


@pytest.fixture
def task(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WORKER_MAX_RETRIES", "2")
    get_settings.cache_clear()
    from services.worker.celery_app import app
    from services.worker.tasks import ingest_batch

    assert ingest_batch.app is app
    yield app.tasks[TASK_NAME]
    get_settings.cache_clear()


def opened(redis_url, embedder, store):
    jobs = JobStore(redis_url)
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=5)
    return resources.opened(Resources(get_settings(), embedder, store, jobs, policy)), jobs


def new_job(jobs: JobStore, photos: int) -> str:
    job_id = jobs.create()
    jobs.add_batches(job_id, 1, photos)
    return job_id


def test_a_batch_run_in_process_is_ingested_and_its_job_finished(task, redis_url, images):
    embedder, store = FakeEmbedder(), FakeStore(exact_below=1)
    photos = [{"photo_id": f"t{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(3)]
    photos.append({"photo_id": "gone", "photo_image_url": f"{images}/nothing.jpg"})
    context, jobs = opened(redis_url, embedder, store)
    with context:
        job_id = new_job(jobs, len(photos))
        result = task.apply(kwargs={"job_id": job_id, "batch_id": uuid.uuid4().hex, "photos": photos})
        assert result.successful(), result.traceback
        job = jobs.get(job_id)
        retry = jobs.failed_records(job_id)
    assert (job["state"], job["succeeded"], job["failed"]) == ("done", 3, 1)
    assert job["failures"][0]["photo_id"] == "gone" and job["failures"][0]["code"] == "http_404"
    assert job["failures_by_reason"] == {"http_404": 1} and retry == [photos[-1]]  # kept for a retry
    assert store.table == {"dim": DIM, "model": MODEL} and sorted(store.photos) == ["t0", "t1", "t2"]
    assert np.allclose(store.photos["t1"][1], image_vector(jpeg(1)))
    assert store.index_builds == 1  # the job ended with the table past exact search
    # Leaving the block closed this process's clients.
    assert embedder.closed and store.closed
    with pytest.raises(RuntimeError, match="no worker resources"):
        resources.current()


def test_a_batch_whose_embedder_stays_down_is_retried_then_failed_photo_by_photo(task, redis_url, images):
    embedder, store = FakeEmbedder(), FakeStore()
    embedder.failure = EmbedderUnavailable("The embedder at http://127.0.0.1:1 did not answer.")
    photos = [{"photo_id": f"d{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(2)]
    context, jobs = opened(redis_url, embedder, store)
    with context:
        job_id = new_job(jobs, len(photos))
        result = task.apply(kwargs={"job_id": job_id, "batch_id": uuid.uuid4().hex, "photos": photos})
        job = jobs.get(job_id)
        retry = jobs.failed_records(job_id)
    assert result.failed() and isinstance(result.result, EmbedderUnavailable)
    assert retry == photos and job["failures_by_reason"] == {"embedder_unavailable": 2}
    # model_info failed too: the first try and WORKER_MAX_RETRIES=2 retries each stopped there.
    assert [method for method, _ in embedder.calls] == ["model_info"] * 3
    assert (job["state"], job["succeeded"], job["failed"]) == ("done", 0, 2)
    assert {failure["photo_id"] for failure in job["failures"]} == {"d0", "d1"}
    for failure in job["failures"]:
        assert failure["code"] == "embedder_unavailable"
        assert failure["reason"].startswith("Gave up after 2 retries: ") and "did not answer" in failure["reason"]
    assert store.photos == {}


def test_a_busy_embedder_slows_the_batch_down_but_never_fails_its_photos(task, redis_url, images):
    # Four 503s with Retry-After, more than WORKER_MAX_RETRIES=2: waits asked for are not retries used up.
    embedder, store = BusyEmbedder(busy=4), FakeStore()
    photos = [{"photo_id": f"b{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(2)]
    context, jobs = opened(redis_url, embedder, store)
    with context:
        job_id = new_job(jobs, len(photos))
        result = task.apply(kwargs={"job_id": job_id, "batch_id": uuid.uuid4().hex, "photos": photos})
        job = jobs.get(job_id)
    assert result.successful(), result.traceback
    assert image_calls(embedder) == 5
    assert (job["state"], job["succeeded"], job["failed"]) == ("done", 2, 0)
    assert sorted(store.photos) == ["b0", "b1"]


def test_a_task_run_where_no_resources_were_opened_fails_and_says_why(task, redis_url, images):
    result = task.apply(kwargs={"job_id": "j", "batch_id": "b",
                                "photos": [{"photo_id": "x", "photo_image_url": f"{images}/img/1.jpg"}]})
    assert result.failed() and "no worker resources" in str(result.result)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_importing_the_worker_reads_no_settings_and_the_task_does_not_import_the_app():
    # Unreadable settings: any module reading them on import would fail here.
    done = _python("import sys; import services.worker.tasks; "
                   "assert 'services.worker.celery_app' not in sys.modules, 'tasks imported the app'; "
                   "import services.worker.celery_app", WORKER_MAX_RETRIES="not-a-number")
    assert done.returncode == 0, done.stderr


def test_the_worker_app_has_the_task_with_its_queue_serializer_and_retry_policy_from_the_settings():
    done = _python(
        # The worker loads the task modules its app lists, as here.
        "from services.worker.celery_app import app; app.loader.import_default_modules(); c = app.conf; "
        "t = app.tasks['imagesearch.ingest_batch']; "
        "print(c.broker_url, c.task_serializer, c.accept_content, c.task_default_queue, c.worker_prefetch_multiplier, "
        "t.acks_late, t.reject_on_worker_lost, t.max_retries, t.retry_backoff, t.retry_backoff_max, t.retry_jitter, "
        "sorted(e.__name__ for e in t.autoretry_for))",
        REDIS_URL="redis://127.0.0.1:1/3", WORKER_MAX_RETRIES="5", WORKER_RETRY_BACKOFF_MAX_S="42")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["redis://127.0.0.1:1/3", "json", "['json']", "ingest", "1", "True", "True", "5",
                                   "2", "42", "True", "['DependencyTimeout',", "'DependencyUnavailable']"]


def test_the_worker_renews_what_it_holds_and_a_killed_workers_batches_wait_only_the_visibility_timeout():
    done = _python(
        "from services.worker.celery_app import app; c = app.conf; "
        "print([s.__name__ for s in app.steps['consumer']], c.broker_transport_options)",
        REDIS_URL="redis://127.0.0.1:1/3", WORKER_VISIBILITY_TIMEOUT_S="30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("['UnackedLease'] {'visibility_timeout': 30, 'unacked_restore_interval': 5, "
                                   "'unacked_restore_throttle': 1}")
