"""Our clients wait out the gateway's rate limit instead of failing on a 429: `ApiClient` (against a
local server that answers 429 with Retry-After a few times, then 200, and against the real gateway with
a limit of one read a second) and the ingest command, which says that it is waiting."""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.common.api_client import ApiClient, ApiError
from tests.unit.api_support import KEY
from tests.unit.gateway_server import served

ROOT = Path(__file__).resolve().parents[2]
LIMITED = {"error": {"code": "rate_limited", "message": "Too many reads: this gateway allows 6 reads per minute "
                                                        "per API key; try again in 1 s."}}


class Throttling(http.server.ThreadingHTTPServer):
    """Answers each path's first `refuse[path]` requests with 429 and `Retry-After`, then as the gateway
    would; keeps every request's path and body."""

    def __init__(self, refuse: dict[str, int], retry_after: str = "1"):
        super().__init__(("127.0.0.1", 0), Handler)
        self.refuse, self.retry_after = dict(refuse), retry_after
        self.requests: list[tuple[str, str, bytes]] = []
        self.polls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Throttling

    def log_message(self, *_):
        pass

    def _answer(self, status: int, body: dict, **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body))
        route = self.path.split("?")[0].rsplit("/", 1)[0] if self.path.startswith("/v1/jobs/") else self.path
        if self.server.refuse.get(route, 0) > 0:
            self.server.refuse[route] -= 1
            return self._answer(429, LIMITED, retry_after=self.server.retry_after)
        if self.path == "/v1/stats":
            return self._answer(200, {"photos": 1, "random_weights": False})
        if self.path in ("/v1/ingest", "/v1/ingest/upload"):
            photos = len(json.loads(body)["photos"]) if self.path == "/v1/ingest" else 1
            return self._answer(202, {"job_id": "job-1", "photos": photos, "batches": 1})
        if self.path.startswith("/v1/jobs/"):
            self.server.polls += 1
            state = "done" if self.server.polls >= 2 else "running"
            return self._answer(200, {"job_id": "job-1", "state": state, "total": 2, "succeeded": 2, "skipped": 0,
                                      "failed": 0, "batches_total": 1, "batches_done": 1, "failures": []})
        return self._answer(404, {"error": {"code": "not_found", "message": "No such route."}})

    do_GET = do_POST = _handle


@contextmanager
def throttling(refuse: dict[str, int], retry_after: str = "1") -> Iterator[Throttling]:
    server = Throttling(refuse, retry_after)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_waits_out_retry_after_and_then_has_its_answer():
    waits: list[tuple[float, str]] = []
    with throttling({"/v1/stats": 2}) as server, \
            ApiClient(server.url, on_rate_limit=lambda seconds, error: waits.append((seconds, error.message))) as api:
        started = time.monotonic()
        assert api.stats()["photos"] == 1
        took = time.monotonic() - started
    assert [seconds for seconds, _ in waits] == [1.0, 1.0]
    assert "Too many reads" in waits[0][1]
    assert 2.0 <= took < 10 and len(server.requests) == 3


def test_a_wait_longer_than_the_cap_is_an_error_at_once_with_a_sentence():
    with throttling({"/v1/stats": 5}, retry_after="3600") as server, \
            ApiClient(server.url, rate_limit_wait=30, on_rate_limit=lambda *_: pytest.fail("it waited")) as api:
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            api.stats()
    assert time.monotonic() - started < 5
    assert caught.value.status == 429 and caught.value.retry_after == 3600
    assert "Too many reads" in caught.value.message and "3600 s" in caught.value.message
    assert "30 s" in caught.value.message and caught.value.message.endswith(".")


def test_a_call_may_ask_not_to_wait_and_an_upload_is_sent_whole_again(tmp_path):
    with throttling({"/v1/jobs": 1, "/v1/ingest/upload": 1}) as server, ApiClient(server.url) as api:
        with pytest.raises(ApiError) as caught:
            api.job("job-1", rate_limit_wait=0)
        assert caught.value.status == 429 and caught.value.retry_after == 1
        assert api.job("job-1", rate_limit_wait=0)["state"] == "running"
        photo = tmp_path / "a.jpg"
        photo.write_bytes(b"\xff\xd8 the whole picture")
        with open(photo, "rb") as handle:
            assert api.upload([("a.jpg", handle, {"path": str(photo), "size": 21, "mtime": 1.0})])["job_id"]
    uploads = [body for method, path, body in server.requests if path == "/v1/ingest/upload"]
    assert len(uploads) == 2 and all(b"\xff\xd8 the whole picture" in body for body in uploads)


def test_against_the_real_gateway_a_client_over_its_limit_still_gets_every_answer(fakes):
    waits: list[float] = []
    with served(fakes, rate_limit="1/second", rate_limit_storage="memory://") as url, \
            ApiClient(url, on_rate_limit=lambda seconds, _: waits.append(seconds)) as api:
        answers = [api.stats()["photos"] for _ in range(3)]
    assert answers == [5, 5, 5] and waits and all(1 <= seconds <= 2 for seconds in waits)


def test_the_ingest_command_says_it_waits_for_the_rate_limit_and_finishes(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("https://img.test/a.jpg\nhttps://img.test/b.jpg\n")
    with throttling({"/v1/stats": 1, "/v1/ingest": 1, "/v1/jobs": 2}) as server:
        done = subprocess.run([sys.executable, "-m", "tools.ingest", str(urls), "--api-url", server.url,
                               "--api-key", KEY, "--poll-interval", "0.1"],
                              cwd=ROOT, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Job job-1: 2 ingested" in done.stdout
    assert done.stderr.count("Waiting 1 s for the gateway's rate limit") == 4, done.stderr
