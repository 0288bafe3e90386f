"""The whole system for end-to-end tests: every service its own process, real Redis, real store.

Photos are generated JPEGs served by a local HTTP server in the test process, listed in an
Unsplash-format TSV, and ingested with the real `ingest` command.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, redis_server, spawn, stop_process, wait_for_http
from tools.sample_data import UNSPLASH_COLUMNS, serve, write_sample_set
from tools.stack import ROOT, Stack

SAMPLE_COUNT = 50
API_KEY = "e2e-test-key"


@dataclass
class RunningStack:
    api_url: str
    ui_url: str
    images_url: str
    images_dir: Path
    tsv: Path
    env: dict[str, str]
    log_dir: Path
    ingest_output: str
    library_dir: Path  # under LIBRARY_ROOTS: folders the workers read where they are

    def ingest(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tools.ingest", str(self.tsv), "--api-url", self.api_url,
             "--api-key", API_KEY, *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300,
        )


def _add_bad_rows(tsv: Path, images_url: str) -> None:
    """Two photos that must fail alone: a URL that 404s and one that serves a web page."""
    with open(tsv, "a", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        blank = [""] * (len(UNSPLASH_COLUMNS) - 3)
        writer.writerow(["missing00001", "", f"{images_url}/images/does-not-exist.jpg", *blank])
        writer.writerow(["webpage00001", "", f"{images_url}/index.html", *blank])


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory, tiny_model_dir) -> RunningStack:
    workdir = tmp_path_factory.mktemp("stack")
    images_dir = workdir / "photos"
    images_dir.mkdir()
    (images_dir / "index.html").write_text("<html><body>not a photo</body></html>")
    server, _ = serve(images_dir)
    images_url = f"http://127.0.0.1:{server.server_address[1]}"
    tsv = write_sample_set(images_dir, SAMPLE_COUNT, images_url)
    _add_bad_rows(tsv, images_url)
    library_dir = workdir / "library"
    library_dir.mkdir()

    with redis_server(workdir) as redis_url:
        ports = {name: free_port() for name in ("api", "embedder", "store", "ui")}
        env = {
            "REDIS_URL": redis_url,
            "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(workdir / "store"),
            "STORE_TABLE": "photos_e2e",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
            "EMBEDDER_MODEL": str(tiny_model_dir),
            "API_URL": f"http://127.0.0.1:{ports['api']}",
            "API_KEYS": API_KEY,
            "UI_PORT": str(ports["ui"]),
            "FETCH_ALLOW_HOSTS": "127.0.0.1",
            "LIBRARY_ROOTS": str(library_dir),
            "WORKER_CONCURRENCY": "2",
            "WORKER_METRICS_PORT": "0",  # tests bind no fixed port
            # The workers decode and crop, as they do beside a GPU embedder, and send pixels: a photo
            # searched by its own encoded image (decoded by the embedder) must still score 1.0.
            "WORKER_PREPROCESS": "worker",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        log_dir = ROOT / "test-output" / "e2e-logs"
        stack = Stack(env=env, log_dir=log_dir, run_dir=workdir / "run")
        stack.start(timeout=180)
        try:
            running = RunningStack(
                api_url=env["API_URL"], ui_url=f"http://127.0.0.1:{ports['ui']}", images_url=images_url,
                images_dir=images_dir / "images", tsv=tsv, env=stack.env, log_dir=log_dir, ingest_output="",
                library_dir=library_dir,
            )
            result = running.ingest("--limit", "1000")
            running.ingest_output = result.stdout + result.stderr
            assert result.returncode == 0, f"ingest failed:\n{running.ingest_output}\nlogs in {log_dir}"
            yield running
        finally:
            stack.stop()
            server.shutdown()


@contextmanager
def ui_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """A UI process of its own (`python -m ui`) on a free port with `env`; yields its address."""
    port = free_port()
    with open(log_path, "w") as log:
        process = spawn([sys.executable, "-m", "ui", "--host", "127.0.0.1", "--port", str(port)],
                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
