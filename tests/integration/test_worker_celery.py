"""A real Celery worker process ingesting batches end to end.

Private redis-server, a fake embedder over HTTP (deterministic vectors), a local image server, and the
real embedded store server (the tests fail if it does not start). Batches are enqueued the way the
gateway does (JobStore + enqueue_ingest) and the job is followed until done.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from services.common.jobs import JobStore
from services.common.queue import enqueue_ingest
from services.photostore import PhotoStore
from tests.integration.worker_support import DIM, MODEL, jpeg, serve_images, vector_of
from tests.support import free_port, redis_server, spawn, stop_process, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


def _start(args, log_path: Path, env=None) -> subprocess.Popen:
    # Through tests.support.spawn: its own process group, ended with the test run even if interrupted.
    with open(log_path, "wb") as log:
        return spawn(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("worker-e2e")
    processes: list[subprocess.Popen] = []
    images = serve_images()
    with redis_server(workdir) as redis_url:
        try:
            embedder_port = free_port()
            embedder = _start([sys.executable, "-m", "uvicorn", "--factory",
                               "tests.integration.worker_support:fake_embedder_app",
                               "--host", "127.0.0.1", "--port", str(embedder_port)], workdir / "embedder.log")
            processes.append(embedder)

            store_port = free_port()
            store_url = f"http://127.0.0.1:{store_port}"
            store = _start([sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(store_port),
                            "--data-dir", str(workdir / "store-data")], workdir / "store.log")
            processes.append(store)
            wait_for_http(f"{store_url}/ping", timeout=60, process=store)
            wait_for_http(f"http://127.0.0.1:{embedder_port}/healthz", timeout=60, process=embedder)

            table = f"worker_test_{uuid.uuid4().hex[:8]}"
            env = {**os.environ, "REDIS_URL": redis_url, "WORKER_METRICS_PORT": "0", "EMBEDDER_URL": f"http://127.0.0.1:{embedder_port}",
                   "STORE_URL": store_url, "STORE_TABLE": table, "FETCH_ALLOW_HOSTS": "127.0.0.1",
                   "WORKER_MAX_RETRIES": "1", "WORKER_DOWNLOAD_TIMEOUT_S": "5",
                   # Tiny, so that the first job pushes the table past exact search (auto index).
                   "STORE_EXACT_BELOW": "6"}
            worker = _start([sys.executable, "-m", "celery", "-A", "services.worker.celery_app", "worker",
                             "-Q", "ingest", "--concurrency", "1", "--loglevel", "INFO", "--without-gossip",
                             "--without-mingle", "--without-heartbeat"], workdir / "worker.log", env=env)
            processes.append(worker)

            photo_store = PhotoStore(store_url, table)
            yield {"redis_url": redis_url, "images": f"http://127.0.0.1:{images.server_address[1]}",
                   "store": photo_store, "worker": worker, "workdir": workdir}
            photo_store.close()
        finally:
            # Before Redis goes: a worker that loses its broker spends its shutdown reconnecting.
            for process in reversed(processes):
                stop_process(process)
            images.shutdown()


def submit(stack, photos, batch_size=4) -> str:
    jobs = JobStore(stack["redis_url"])
    job_id = jobs.create()
    batches = -(-len(photos) // batch_size)
    jobs.add_batches(job_id, batches, len(photos))
    assert enqueue_ingest(stack["redis_url"], job_id, photos, batch_size) == batches
    return job_id


def wait_done(stack, job_id, timeout=90.0) -> dict:
    jobs = JobStore(stack["redis_url"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job and job["state"] == "done":
            return job
        assert stack["worker"].poll() is None, (stack["workdir"] / "worker.log").read_text()
        time.sleep(0.3)
    raise AssertionError(f"job not done: {jobs.get(job_id)}\n{(stack['workdir'] / 'worker.log').read_text()[-4000:]}")


def test_a_worker_ingests_batches_and_explains_failures(stack):
    images = stack["images"]
    photos = [{"photo_id": f"w{i}", "photo_image_url": f"{images}/img/{i}.jpg", "photo_description": f"photo {i}"}
              for i in range(8)]
    photos += [{"photo_id": "gone", "photo_image_url": f"{images}/nothing.jpg"},
               {"photo_id": "broken", "photo_image_url": f"{images}/broken.jpg"}]
    job = wait_done(stack, submit(stack, photos, batch_size=4))

    assert (job["total"], job["succeeded"], job["skipped"], job["failed"]) == (10, 8, 0, 2)
    assert (job["batches_total"], job["batches_done"]) == (3, 3)
    reasons = {failure["photo_id"]: failure for failure in job["failures"]}
    assert reasons["gone"]["code"] == "http_404" and "404" in reasons["gone"]["reason"]
    assert reasons["broken"]["code"] and reasons["broken"]["reason"]

    store = stack["store"]
    assert store.count() == 8
    info = store.table_info()
    assert (info["model"], info["dim"]) == (MODEL, DIM)
    stored = store.get_photo("w5", with_vector=True)
    assert stored["photo_image_url"] == f"{images}/img/5.jpg"
    assert np.allclose(np.asarray(stored["vector"], dtype=np.float32), vector_of(jpeg(5)), atol=1e-5)


def test_ingesting_the_same_photos_again_adds_nothing(stack):
    images = stack["images"]
    photos = [{"photo_id": f"w{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(8)]
    photos.append({"photo_id": "new", "photo_image_url": f"{images}/img/42.jpg"})
    job = wait_done(stack, submit(stack, photos, batch_size=5))
    assert (job["succeeded"], job["skipped"], job["failed"]) == (1, 8, 0)
    assert stack["store"].count() == 9


def test_the_vector_index_is_built_once_a_job_pushes_the_table_past_exact_search(stack):
    images = stack["images"]
    photos = [{"photo_id": f"grow{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(7)]
    wait_done(stack, submit(stack, photos, batch_size=3))
    store = stack["store"]
    deadline = time.monotonic() + 60
    while store.index_status()["status"] != "Built":
        assert time.monotonic() < deadline, (store.index_status(), (stack["workdir"] / "worker.log").read_text()[-3000:])
        time.sleep(0.3)
    # Later jobs find it built and leave it alone.
    wait_done(stack, submit(stack, [{"photo_id": "grow-later", "photo_image_url": f"{images}/img/1.jpg"}]))
    log = (stack["workdir"] / "worker.log").read_text()
    assert log.count("building its vector index") == 1, log[-3000:]
    assert store.index_status()["status"] == "Built"
