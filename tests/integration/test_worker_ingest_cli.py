"""The ingest command as a user runs it, against a small stand-in gateway (the real one is covered end
to end in tests/e2e): chunked submission into one job, progress until done, summary, exit codes."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from tests.integration.worker_support import jpeg
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key"
HEADER = "photo_id\tphoto_url\tphoto_image_url\tphoto_width\tphoto_height\tphoto_description"


class Gateway:
    """Records submissions; a job is 'done' at the second poll. For URLs it can fetch it really does,
    so a test can see that a served folder is reachable while the command runs."""

    def __init__(self):
        self.calls: list[dict] = []
        self.jobs: dict[str, dict] = {}
        # The next jobs created are lost (404, as after a Redis restart without persistence) or stall
        # (running with no progress, as when the broker lost their queued batches).
        self.lose_next = self.stall_next = 0
        self.app = FastAPI()
        self.app.get("/v1/stats")(lambda: {"photos": 0, "model": None, "random_weights": True})
        self.app.post("/v1/ingest")(self.ingest)
        self.app.get("/v1/jobs/{job_id}")(self.job)
        self.app.post("/v1/jobs/{job_id}/retry")(self.retry)

    async def retry(self, job_id: str, batch_size: int = 32, x_api_key: str | None = Header(None)):
        if x_api_key != KEY:
            return JSONResponse({"error": {"code": "unauthorized", "message": "A valid X-API-Key is required."}},
                                status_code=401)
        failed = [failure["photo_id"] for failure in self.job(job_id)["failures"]]
        photos = [photo for photo in self.jobs[job_id]["photos"] if photo["photo_id"] in failed]
        new_id = uuid.uuid4().hex
        self.jobs[new_id] = {"photos": photos, "polls": 0, "retry_of": job_id, "lost": False, "stalled": False}
        return JSONResponse({"job_id": new_id, "photos": len(photos), "batches": 1, "retry_of": job_id},
                            status_code=202)

    async def ingest(self, request: Request, x_api_key: str | None = Header(None)):
        if x_api_key != KEY:
            return JSONResponse({"error": {"code": "unauthorized", "message": "A valid X-API-Key is required."}},
                                status_code=401)
        body = await request.json()
        self.calls.append(body)
        job_id = body.get("job_id") or uuid.uuid4().hex
        if job_id not in self.jobs:
            lost, stalled = self.lose_next > 0, self.lose_next == 0 and self.stall_next > 0
            self.lose_next -= lost
            self.stall_next -= stalled
            self.jobs[job_id] = {"photos": [], "polls": 0, "lost": lost, "stalled": stalled}
        job = self.jobs[job_id]
        job["photos"].extend(body["photos"])
        return JSONResponse({"job_id": job_id, "photos": len(body["photos"]), "batches": 1}, status_code=202)

    def job(self, job_id: str):
        job = self.jobs[job_id]
        if job["lost"]:
            return JSONResponse({"error": {"code": "not_found", "message": f"No job {job_id}."}}, status_code=404)
        job["polls"] += 1
        photos = job["photos"]
        if job["stalled"]:
            return {"job_id": job_id, "state": "running", "total": len(photos), "succeeded": 0, "skipped": 0,
                    "failed": 0, "batches_total": 1, "batches_done": 0, "failures": []}
        failed = [photo for photo in photos if photo["photo_image_url"].startswith("http://127.0.0.1")
                  and not _reachable(photo["photo_image_url"])]
        return {"job_id": job_id, "state": "done" if job["polls"] >= 2 else "running", "total": len(photos),
                "succeeded": len(photos) - len(failed), "skipped": 0, "failed": len(failed),
                "batches_total": 1, "batches_done": 1, "rate": 12.5, "eta_s": 3725.0 if job["polls"] < 2 else 0.0,
                "failures_by_reason": {"http_404": len(failed)} if failed else {},
                "failures": [{"photo_id": photo["photo_id"], "url": photo["photo_image_url"], "code": "http_404",
                              "reason": "It answered HTTP 404."} for photo in failed]}


def _reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def gateway():
    fake = Gateway()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the stand-in gateway did not start"
        time.sleep(0.05)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


def run_ingest(*args: str, env_key: str | None = KEY) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if env_key:
        env["API_KEYS"] = f"{env_key},other"
    return subprocess.run([sys.executable, "-m", "tools.ingest", *args, "--poll-interval", "0.1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_tsv_is_submitted_in_chunks_to_one_job_and_summarised(gateway, tmp_path):
    rows = [f"p{i}\thttps://unsplash.com/photos/p{i}\thttps://images.test/p{i}\t10\t20\tphoto {i}" for i in range(5)]
    rows.insert(2, "\thttps://unsplash.com/photos/x\thttps://images.test/x\t1\t1\tno id")
    source = tmp_path / "photos.tsv000"
    source.write_text("\n".join([HEADER, *rows]) + "\n")
    gateway.calls.clear()

    result = run_ingest(str(source), "--api-url", gateway.url, "--chunk-size", "2", "--batch-size", "8",
                        "--limit", "4")

    assert result.returncode == 0, result.stderr
    assert [len(call["photos"]) for call in gateway.calls] == [2, 2]
    assert "job_id" not in gateway.calls[0] and gateway.calls[1]["job_id"]
    assert gateway.calls[0]["batch_size"] == 8
    assert gateway.calls[0]["photos"][0]["photo_image_url"] == "https://images.test/p0?q=75&fm=jpg&w=200&fit=max"
    assert "skipped photos.tsv000 line 4" in result.stderr and "photo_id" in result.stderr
    assert "4 ingested, 0 skipped (already stored), 0 failed, of 4" in result.stdout
    assert "RANDOM WEIGHTS" in result.stdout and "meaningless" in result.stdout


def test_a_folder_is_served_while_the_job_runs(gateway, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        (folder / f"pic_{i}.jpg").write_bytes(jpeg(i))

    result = run_ingest(str(folder), "--api-url", gateway.url, "--serve", "127.0.0.1:0")

    assert result.returncode == 0, result.stderr
    assert "3 ingested" in result.stdout and "FETCH_ALLOW_HOSTS" in result.stderr


def test_per_photo_failures_are_listed_and_still_exit_zero(gateway, tmp_path):
    source = tmp_path / "urls.txt"
    source.write_text("http://127.0.0.1:1/gone.jpg\nhttp://127.0.0.1:1/lost.jpg\nhttps://images.test/ok.jpg\n")
    result = run_ingest(str(source), "--api-url", gateway.url)
    assert result.returncode == 0, result.stderr
    assert "2 failed" in result.stdout
    table = result.stdout[result.stdout.index("Failures by reason:"):].splitlines()
    assert table[1].split() == ["reason", "photos", "example"]
    assert table[3].split() == ["http_404", "2", "It", "answered", "HTTP", "404."]
    assert "12.5 photos/s ETA 1:02:05" in result.stderr  # the progress line while it runs
    job_id = result.stdout.split("Submitted 3 photos as job ")[1].split()[0]

    retried = run_ingest("--retry", job_id, "--api-url", gateway.url)
    assert retried.returncode == 0, retried.stderr
    assert f"Retrying 2 failed photos of job {job_id}" in retried.stdout
    new_job = retried.stdout.split(" as job ")[1].split(".")[0]
    assert gateway.jobs[new_job]["retry_of"] == job_id
    assert [p["photo_image_url"] for p in gateway.jobs[new_job]["photos"]] == ["http://127.0.0.1:1/gone.jpg",
                                                                                "http://127.0.0.1:1/lost.jpg"]


def test_a_refused_key_and_an_unreachable_gateway_fail_with_a_sentence(gateway, tmp_path):
    source = tmp_path / "urls.txt"
    source.write_text("https://images.test/a.jpg\n")
    refused = run_ingest(str(source), "--api-url", gateway.url, "--api-key", "wrong")
    assert refused.returncode == 1 and "A valid X-API-Key is required." in refused.stderr

    port = free_port()
    unreachable = run_ingest(str(source), "--api-url", f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 2 and f"127.0.0.1:{port}" in unreachable.stderr

    missing = run_ingest(str(tmp_path / "nope.tsv"), "--api-url", gateway.url)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize("fault", ["lost", "stalled"])
def test_a_job_the_broker_lost_is_submitted_again_and_followed_to_the_end(gateway, tmp_path, fault):
    source = tmp_path / "urls.txt"
    source.write_text("https://images.test/a.jpg\nhttps://images.test/b.jpg\n")
    gateway.calls.clear()
    gateway.lose_next, gateway.stall_next = fault == "lost", fault == "stalled"

    result = run_ingest(str(source), "--api-url", gateway.url, "--stall-timeout", "0.5")

    assert result.returncode == 0, result.stderr
    # The same photos twice, the second time as a new job; the summary is the new job's.
    assert [call["photos"] for call in gateway.calls[1:]] == [gateway.calls[0]["photos"]]
    assert "job_id" not in gateway.calls[1]
    assert ("is gone" if fault == "lost" else "made no progress for 0.5 s") in result.stderr
    assert "Submitting the same photos again as a new job" in result.stderr
    assert "2 ingested, 0 skipped (already stored), 0 failed, of 2" in result.stdout
