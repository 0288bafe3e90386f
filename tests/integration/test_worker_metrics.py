"""A real prefork Celery worker (two child processes) serves its metrics, summed over its children.

Same parts as test_worker_celery.py (private Redis, fake embedder over HTTP, local images, the real
embedded store); the worker listens on WORKER_METRICS_PORT and its children write to WORKER_METRICS_DIR.
"""
from __future__ import annotations

import os
import sys
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_worker_celery import _start, submit, wait_done
from tests.integration.worker_support import serve_images
from tests.support import free_port, redis_server, stop_process, wait_for_http


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("worker-metrics")
    processes = []
    images = serve_images()
    with redis_server(workdir) as redis_url:
        try:
            embedder_port, store_port, metrics_port = free_port(), free_port(), free_port()
            processes.append(_start([sys.executable, "-m", "uvicorn", "--factory",
                                     "tests.integration.worker_support:fake_embedder_app",
                                     "--host", "127.0.0.1", "--port", str(embedder_port)], workdir / "embedder.log"))
            store_url = f"http://127.0.0.1:{store_port}"
            processes.append(_start([sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1",
                                     "--port", str(store_port), "--data-dir", str(workdir / "store")],
                                    workdir / "store.log"))
            wait_for_http(f"{store_url}/ping", timeout=60, process=processes[-1])
            wait_for_http(f"http://127.0.0.1:{embedder_port}/healthz", timeout=60, process=processes[0])
            metrics_dir = workdir / "metrics"
            env = {**os.environ, "REDIS_URL": redis_url, "EMBEDDER_URL": f"http://127.0.0.1:{embedder_port}",
                   "STORE_URL": store_url, "STORE_TABLE": f"metrics_{uuid.uuid4().hex[:8]}",
                   "FETCH_ALLOW_HOSTS": "127.0.0.1", "WORKER_MAX_RETRIES": "0", "WORKER_AUTO_INDEX": "false",
                   "WORKER_METRICS_PORT": str(metrics_port), "WORKER_METRICS_DIR": str(metrics_dir)}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            worker = _start([sys.executable, "-m", "celery", "-A", "services.worker.celery_app", "worker",
                             "-Q", "ingest", "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"],
                            workdir / "worker.log", env=env)
            processes.append(worker)
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            wait_for_http(metrics_url, timeout=60, process=worker)
            yield {"redis_url": redis_url, "images": f"http://127.0.0.1:{images.server_address[1]}",
                   "worker": worker, "workdir": workdir, "metrics_url": metrics_url, "metrics_dir": metrics_dir}
        finally:
            for process in reversed(processes):
                stop_process(process)
            images.shutdown()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_worker_serves_task_and_photo_counts_summed_over_its_children(stack):
    images = stack["images"]
    photos = [{"photo_id": f"m{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(22)]
    photos += [{"photo_id": "gone", "photo_image_url": f"{images}/nothing.jpg"}]
    job = wait_done(stack, submit(stack, photos, batch_size=2))
    assert (job["succeeded"], job["failed"]) == (22, 1)

    samples = scrape(stack["metrics_url"])
    assert samples[("worker_tasks_total", (("outcome", "succeeded"),))] == 12
    assert samples[("worker_photos_total", (("outcome", "inserted"), ("reason", "")))] == 22
    assert samples[("worker_photos_total", (("outcome", "failed"), ("reason", "http_404")))] == 1
    # Every batch downloaded; the one holding only the missing photo stopped there.
    assert samples[("worker_stage_duration_seconds_count", (("stage", "download"),))] == 12
    assert samples[("worker_stage_duration_seconds_count", (("stage", "insert"),))] == 11
    # The counts came from both children: each wrote its own file, and the server summed them.
    writers = {path.stem.rsplit("_", 1)[1] for path in stack["metrics_dir"].glob("counter_*.db")}
    assert len(writers) == 2, writers
