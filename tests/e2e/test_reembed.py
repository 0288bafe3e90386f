"""Re-embedding a library under a second model with no downtime, through the whole system.

A library of 60 generated photos (20 by URL from a local HTTP server, 20 files under a library root, 20
uploads) is ingested with tiny random CLIP (model A). `make reembed`'s command (`python -m
tools.reembed`) then moves it to tiny random SigLIP (model B, another dimension) while a search loop
runs in a thread; the worker is SIGKILLed halfway and started again, and the job finishes without
embedding again what was done before the kill. Every search through it answers, with results. After the
switch a query's results are those of model B's vectors; rollback answers with model A again, and
drop-old drops the old table. A model the embedder cannot load is refused with a sentence, and nothing
changes.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.common.embedder_client import EmbedderClient
from services.photostore.active import reembed_table_name
from tests.conftest import ROOT
from tests.faults.fault_stack import API_KEY, TABLE, FaultStack
from tools.random_model import write_random_model
from tools.sample_data import draw_photo, serve, write_sample_set

# A whole stack, three ingestions and a re-embedding through a worker restart: minutes on 2 shared cores.
pytestmark = pytest.mark.timeout(900)

EACH = 20
PHOTOS = 3 * EACH
BATCH = 2


def _write_photos(folder: Path, first: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + EACH):
        image, _ = draw_photo(index)
        image.save(folder / f"photo{index:04d}.jpg", "JPEG", quality=85)
    return folder


class SearchLoop:
    """Text searches one after another, each with a new text (so the text cache never answers for the
    embedder), until stopped; keeps (status, results, model) of each."""

    def __init__(self, api_url: str):
        self.api_url = api_url
        self.answers: list[tuple[int | str, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-loop", daemon=True)

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/v1/search", json={"text": f"a red square {len(self.answers)}",
                                                             "top_k": 5, "mode": "vector"})
                    body = answer.json()
                    self.answers.append((answer.status_code, len(body.get("results") or []), body.get("model")))
                except httpx.HTTPError as exc:
                    self.answers.append((type(exc).__name__, 0, None))

    def failures(self) -> list:
        return [answer for answer in self.answers if answer[0] != 200 or answer[1] == 0]


def _sql(store_url: str, query: str) -> str:
    request = urllib.request.Request(store_url + "/", data=query.encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def _rows(store_url: str, table: str) -> int:
    try:
        return int(_sql(store_url, f"SELECT count() FROM {table} FORMAT TSV").strip())
    except Exception:  # not created yet
        return 0


def _items_embedded(embedder_url: str, model: str) -> float:
    text = httpx.get(embedder_url + "/metrics", timeout=10).text
    pattern = re.compile(r'^embedder_model_items_embedded_total\{(.*)\} ([0-9.e+]+)$', re.M)
    return sum(float(value) for labels, value in pattern.findall(text)
               if 'kind="image"' in labels and f'model="{model}"' in labels)


def _reembed(stack: FaultStack, *args: str, wait: bool = True):
    command = [sys.executable, "-m", "tools.reembed", "--api-url", stack.api_url, "--api-key", API_KEY,
               "--poll-interval", "0.5", *args]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=600)


def _ingest(stack: FaultStack, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tools.ingest", *args, "--api-url", stack.api_url,
                             "--api-key", API_KEY], cwd=ROOT, env=stack.env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("reembed")
    web = workdir / "web"
    server, _ = serve(web)
    tsv = write_sample_set(web, EACH, f"http://127.0.0.1:{server.server_address[1]}")
    library = _write_photos(workdir / "library" / "photos", 100)
    uploads = _write_photos(workdir / "uploads", 200)
    fault_stack = FaultStack(workdir, tiny_model_dir, ROOT / "test-output" / "reembed-logs")
    fault_stack.env["LIBRARY_ROOTS"] = str(workdir / "library")
    fault_stack.start(timeout=240)
    try:
        _ingest(fault_stack, str(tsv))
        _ingest(fault_stack, str(library))
        _ingest(fault_stack, str(uploads), "--upload")
        assert _rows(fault_stack.store_url, TABLE) == PHOTOS
        yield fault_stack
    finally:
        fault_stack.stop()
        server.shutdown()


def test_a_library_moves_to_a_second_model_under_searches_through_a_worker_kill(stack, tmp_path):
    model_b = str(write_random_model(tmp_path / "siglip-tiny", family="siglip", size="tiny"))
    api = httpx.Client(base_url=stack.api_url, timeout=30, headers={"X-API-Key": API_KEY})
    embedder_url = stack.env["EMBEDDER_URL"]

    # A model the embedder cannot load: refused with its sentence, and nothing changes.
    refused = _reembed(stack, "--model", str(tmp_path / "no-such-model"))
    assert refused.returncode == 1
    assert "The embedder cannot load" in refused.stderr and "nothing was changed" in refused.stderr
    status = api.get("/v1/reembed").json()
    assert status["job"] is None and status["active"]["table"] == TABLE and status["active"]["model"] is None
    model_a = api.post("/v1/search", json={"text": "a red square", "mode": "vector"}).json()["model"]
    same = _reembed(stack, "--model", str(stack.env["EMBEDDER_MODEL"]))
    assert same.returncode == 1 and "already answers queries" in same.stderr, same.stderr
    assert api.get("/v1/reembed").json()["job"] is None

    new_table = reembed_table_name(TABLE, model_b)
    with SearchLoop(stack.api_url) as loop:
        command = _reembed(stack, "--model", model_b, "--batch-size", str(BATCH), wait=False)
        try:
            # Halfway: some photos are in the new table, not all. Then the worker dies and another starts.
            while (done_before_kill := _rows(stack.store_url, new_table)) < PHOTOS // 3:
                assert command.poll() is None, command.communicate()
                time.sleep(0.05)
            stack.kill("worker")
            done_before_kill = _rows(stack.store_url, new_table)
            assert done_before_kill < PHOTOS
            searches_at_kill = len(loop.answers)
            stack.start_service("worker", timeout=240)
            out, err = command.communicate(timeout=600)
        finally:
            if command.poll() is None:
                command.kill()
        assert command.returncode == 0, out + err
        assert "Switched" in out and model_b in out
        time.sleep(5)  # searches after the switch, too
    assert loop.answers and len(loop.answers) > searches_at_kill
    assert loop.failures() == []
    assert {answer[2] for answer in loop.answers} <= {model_a, model_b}
    assert loop.answers[-1][2] == model_b

    # Resumed, not restarted: each photo embedded once with model B, but for the batches in flight at the kill
    # (one per pool process: WORKER_CONCURRENCY is 2).
    assert PHOTOS <= _items_embedded(embedder_url, model_b) <= PHOTOS + 2 * BATCH
    total, distinct = _sql(stack.store_url, f"SELECT count(), uniqExact(photo_id) FROM {new_table} FINAL "
                                            "FORMAT TSV").split()
    assert int(total) == int(distinct) == PHOTOS

    # The gateway answers from the new table with model B's vectors.
    status = api.get("/v1/reembed").json()
    assert status["active"]["table"] == new_table and status["active"]["model"] == model_b
    assert status["job"]["state"] == "done" and status["job"]["done"] >= PHOTOS - done_before_kill
    with EmbedderClient(embedder_url) as embedder:
        query = embedder.embed_texts(["a blue circle"], model=model_b)[0]
        sample = (stack.workdir / "web" / "images" / "sample00003.jpg").read_bytes()
        sample_vector = embedder.embed_images([sample], model=model_b)[0]
    stored = [json.loads(line) for line in _sql(stack.store_url, f"SELECT photo_id, photo_embed FROM {new_table} "
                                                                  "FINAL FORMAT JSONEachRow").splitlines()]
    vectors = {row["photo_id"]: np.asarray(row["photo_embed"], dtype=np.float32) for row in stored}
    assert float(vectors["sample00003"] @ sample_vector) > 0.999
    expected = sorted(vectors, key=lambda photo_id: -float(vectors[photo_id] @ query))[:5]
    answer = api.post("/v1/search", json={"text": "a blue circle", "top_k": 5, "mode": "vector"},
                      headers={"Cache-Control": "no-cache"}).json()
    assert answer["model"] == model_b
    assert [result["photo_id"] for result in answer["results"]] == expected

    # Rollback: model A answers again, from the old table; then forward again, and drop the old one.
    back = _reembed(stack, "--action", "rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    time.sleep(2.5)  # the gateway re-reads the active record every 2 s
    again = api.post("/v1/search", json={"text": "a blue circle", "mode": "vector"}).json()
    assert again["model"] == model_a and again["results"]
    assert _reembed(stack, "--action", "rollback").returncode == 0
    dropped = _reembed(stack, "--action", "drop-old")
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert f"Dropped {TABLE}" in dropped.stdout
    assert _sql(stack.store_url, f"EXISTS TABLE {TABLE} FORMAT TSV").strip() == "0"
    time.sleep(2.5)
    last = api.post("/v1/search", json={"text": "a green triangle", "mode": "vector"}).json()
    assert last["model"] == model_b and last["results"]
    assert _reembed(stack, "--action", "rollback").returncode == 1  # nothing left to roll back to
