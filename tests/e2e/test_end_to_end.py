"""End to end: ingest generated photos through the real command, then search through the gateway.

Every service runs as its own process (store, embedder with a tiny random CLIP, Celery worker,
gateway, UI) with a private Redis; see conftest.py.
"""
from __future__ import annotations

import base64
import re

import httpx
import pytest

from tests.e2e.conftest import SAMPLE_COUNT

pytestmark = pytest.mark.e2e


def _search(stack, **body) -> httpx.Response:
    return httpx.post(f"{stack.api_url}/v1/search", json=body, timeout=30)


def test_ingest_reports_successes_and_each_failure(running_stack):
    output = running_stack.ingest_output
    assert re.search(rf"\b{SAMPLE_COUNT}\b", output), output
    assert "missing00001" in output or "404" in output, output
    stats = httpx.get(f"{running_stack.api_url}/v1/stats", timeout=10).json()
    assert stats["photos"] == SAMPLE_COUNT
    assert stats["random_weights"] is True


def test_job_records_why_each_bad_photo_failed(running_stack):
    # The job id is printed by the ingest command; read it back through the API.
    match = re.search(r"job[ _:=]+([0-9a-f]{8,})", running_stack.ingest_output, re.IGNORECASE)
    assert match, running_stack.ingest_output
    job = httpx.get(f"{running_stack.api_url}/v1/jobs/{match.group(1)}", timeout=10).json()
    assert job["state"] == "done"
    assert job["succeeded"] == SAMPLE_COUNT
    assert job["failed"] == 2
    reasons = {failure["photo_id"]: failure for failure in job["failures"]}
    assert set(reasons) == {"missing00001", "webpage00001"}
    assert "404" in reasons["missing00001"]["reason"]
    assert reasons["webpage00001"]["code"] == "not_an_image"


def test_search_by_text_returns_top_k_ranked(running_stack):
    response = _search(running_stack, text="a red circle on a blue background", top_k=7)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert len(results) == 7
    assert [r["rank"] for r in results] == list(range(1, 8))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["photo_id"].startswith("sample") for r in results)
    assert body["random_weights"] is True and body["notice"]


@pytest.mark.parametrize("index", [3, 31])
def test_a_photo_searched_by_its_own_image_comes_back_first(running_stack, index):
    photo = (running_stack.images_dir / f"sample{index:05d}.jpg").read_bytes()
    response = httpx.post(
        f"{running_stack.api_url}/v1/search",
        files={"image": (f"query{index}.jpg", photo, "image/jpeg")},
        data={"top_k": "5"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert first["photo_id"] == f"sample{index:05d}"
    assert first["score"] == pytest.approx(1.0, abs=1e-3)
    assert first["photo_image_url"].startswith(running_stack.images_url)


def test_search_by_text_and_image_mixes_both(running_stack):
    photo = (running_stack.images_dir / "sample00012.jpg").read_bytes()
    image_b64 = base64.b64encode(photo).decode()
    text = "a yellow square on a black background"
    image_only = _search(running_stack, image_base64=image_b64, top_k=SAMPLE_COUNT).json()["results"]
    text_only = _search(running_stack, text=text, top_k=SAMPLE_COUNT).json()["results"]
    both = _search(running_stack, text=text, image_base64=image_b64, weight=0.5, top_k=SAMPLE_COUNT).json()["results"]
    assert len(both) == SAMPLE_COUNT
    # The mean of two unit vectors scores each photo by the mean of its two cosine similarities
    # (up to one normalising factor), so the ranking must follow the summed scores.
    by_id_image = {r["photo_id"]: r["score"] for r in image_only}
    by_id_text = {r["photo_id"]: r["score"] for r in text_only}
    expected = sorted(by_id_image, key=lambda pid: by_id_image[pid] + by_id_text[pid], reverse=True)
    assert [r["photo_id"] for r in both][:5] == expected[:5]
    all_image = _search(running_stack, text=text, image_base64=image_b64, weight=1.0, top_k=5).json()["results"]
    assert [r["photo_id"] for r in all_image] == [r["photo_id"] for r in image_only[:5]]


def test_more_like_this_by_photo_id(running_stack):
    response = _search(running_stack, photo_id="sample00020", top_k=3)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["photo_id"] == "sample00020"


def test_random_photo_is_one_of_the_ingested(running_stack):
    photo = httpx.get(f"{running_stack.api_url}/v1/photos/random", timeout=10).json()
    assert photo["photo_id"].startswith("sample")
    assert photo["photo_image_url"].startswith(running_stack.images_url)


def test_empty_query_gets_a_sentence(running_stack):
    response = _search(running_stack, text="   ")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "text" in message and "image" in message


def test_ingest_without_a_key_is_refused(running_stack):
    response = httpx.post(f"{running_stack.api_url}/v1/ingest",
                          json={"photos": [{"photo_id": "x", "photo_image_url": "http://127.0.0.1/x.jpg"}]}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["message"]


def test_ingesting_again_adds_no_duplicates(running_stack):
    result = running_stack.ingest("--limit", "1000")
    assert result.returncode == 0, result.stdout + result.stderr
    stats = httpx.get(f"{running_stack.api_url}/v1/stats", timeout=10).json()
    assert stats["photos"] == SAMPLE_COUNT
    results = _search(running_stack, text="anything", top_k=100).json()["results"]
    ids = [r["photo_id"] for r in results]
    assert len(ids) == len(set(ids)) == SAMPLE_COUNT


def _wait_for_line(path, *needles: str, timeout: float = 10.0) -> str:
    """The first line of a service's log that holds every needle (logs are written as they happen)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if all(needle in line for needle in needles)]
        if lines or time.monotonic() > deadline:
            return lines[0] if lines else ""
        time.sleep(0.1)


def test_one_request_id_follows_a_search_through_the_gateway_and_the_embedder(running_stack):
    import uuid

    trace = f"e2e-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{running_stack.api_url}/v1/search", json={"text": "a green square"},
                          headers={"X-Request-ID": trace}, timeout=30)
    assert response.status_code == 200 and response.headers["x-request-id"] == trace
    # The gateway's access line and the embedder's, for the call it made on this search's behalf.
    assert _wait_for_line(running_stack.log_dir / "api.log", f"[{trace}]", "POST /v1/search 200")
    assert _wait_for_line(running_stack.log_dir / "embedder.log", f"[{trace}]", "POST /v1/embed/text 200")
    refused = httpx.post(f"{running_stack.api_url}/v1/search", json={}, timeout=30)
    assert refused.status_code == 422
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]


def test_the_embedder_logs_name_the_ingest_job_that_called_it(running_stack):
    match = re.search(r"job[ _:=]+([0-9a-f]{8,})", running_stack.ingest_output, re.IGNORECASE)
    assert match, running_stack.ingest_output
    # The workers crop (WORKER_PREPROCESS=worker in conftest.py): they send pixels.
    assert _wait_for_line(running_stack.log_dir / "embedder.log", f"[job-{match.group(1)}]", "POST /v1/embed/pixels 200")
