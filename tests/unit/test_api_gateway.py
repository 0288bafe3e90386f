"""Unit tests of the gateway (services/api) and its client, with the adapters replaced by small fakes.

The fakes are honest in-memory versions (the store ranks by real cosine similarity), so tests assert
on what a caller sees: statuses, sentences, ranks and scores.
"""
from __future__ import annotations

import base64
import json
import math
import random
import socket
import threading
import time
import uuid
import zlib

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from services.api.config import ApiSettings
from services.api.deps import Services
from services.api.main import create_app
from services.api.query import NOTHING_TO_SEARCH
from services.common.api_client import ApiClient, ApiError
from services.common.errors import BadRequest, DependencyTimeout, DependencyUnavailable
from services.common.fetch import FetchError
from services.common.vectors import combine

DIM = 8
KEY = "test-key"


def unit_vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def text_vector(text: str) -> np.ndarray:
    return unit_vector(zlib.crc32(text.encode()))


def image_vector(image: bytes) -> np.ndarray:
    return unit_vector(zlib.crc32(image) + 1)


class FakeEmbedder:
    def __init__(self) -> None:
        self.random_weights = True
        self.failure: Exception | None = None

    async def model_info(self) -> dict:
        if self.failure:
            raise self.failure
        return {"name": "fake-clip", "dim": DIM, "device": "cpu", "dtype": "float32", "fingerprint": "f00d",
                "random_weights": self.random_weights}

    async def embed_texts(self, texts: list[str]) -> np.ndarray:
        if self.failure:
            raise self.failure
        return np.stack([text_vector(text) for text in texts])

    async def embed_images(self, images: list[bytes]) -> np.ndarray:
        if self.failure:
            raise self.failure
        for index, image in enumerate(images):
            if image.startswith(b"not an image"):
                raise BadRequest(f"Image {index} is not an image the embedder can read.", code="invalid_image")
        return np.stack([image_vector(image) for image in images])


class FakeStore:
    """In memory, ranking by cosine similarity like the real store."""

    def __init__(self) -> None:
        self.photos: dict[str, tuple[dict, np.ndarray]] = {}
        self.queries: list[np.ndarray] = []
        self.down = False

    def add(self, photo_id: str, vector: np.ndarray, **metadata) -> None:
        record = {"photo_id": photo_id, "photo_image_url": f"http://img.test/{photo_id}.jpg", **metadata}
        self.photos[photo_id] = (record, vector / np.linalg.norm(vector))

    def _up(self) -> None:
        if self.down:
            from services.photostore import StoreUnavailable
            raise StoreUnavailable("The store at http://store.test cannot be reached.")

    def table_info(self):
        self._up()
        return {"model": "fake-clip", "dim": DIM} if self.photos else None

    def search(self, vector, top_k=10, min_score=None, filters=None, exclude_photo_id=None, offset=0,
               collapse=None):
        self._up()
        self.queries.append(np.asarray(vector))
        self.options = {"offset": offset, "collapse": collapse}
        rows = []
        for record, stored in self.photos.values():
            if filters and any(record.get(k) != v for k, v in filters.items()):
                continue
            score = float(np.dot(stored, vector))
            if min_score is None or score >= min_score:
                rows.append({**record, "score": score, "vector": stored})
        rows.sort(key=lambda row: -row["score"])
        if collapse is not None:
            kept = []
            for row in rows:
                if all(float(np.dot(row["vector"], other["vector"])) < collapse for other in kept):
                    kept.append(row)
            rows = kept
        return [{k: v for k, v in row.items() if k != "vector"} for row in rows][offset:offset + top_k]

    def get_photo(self, photo_id, with_vector=False):
        self._up()
        if photo_id not in self.photos:
            return None
        record, vector = self.photos[photo_id]
        return {**record, "vector": vector.tolist()} if with_vector else dict(record)

    def random_photo(self, filters=None):
        self._up()
        matching = [record for record, _ in self.photos.values()
                    if not filters or all(record.get(k) == v for k, v in filters.items())]
        return dict(random.choice(matching)) if matching else None

    def count(self):
        self._up()
        return len(self.photos)

    def ping(self):
        self._up()
        return True


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}

    def create(self, job_id=None):
        job_id = job_id or uuid.uuid4().hex
        self.jobs[job_id] = {"job_id": job_id, "state": "queued", "total": 0, "succeeded": 0, "skipped": 0,
                             "failed": 0, "batches_total": 0, "batches_done": 0, "failures": []}
        return job_id

    def add_batches(self, job_id, batches, photos):
        self.jobs[job_id]["batches_total"] += batches
        self.jobs[job_id]["total"] += photos

    def get(self, job_id):
        return self.jobs.get(job_id)

    def ping(self):
        return True


class Fakes:
    def __init__(self) -> None:
        self.embedder = FakeEmbedder()
        self.store = FakeStore()
        self.jobs = FakeJobs()
        self.enqueued: list[tuple[str, int, int]] = []
        self.urls: dict[str, bytes] = {}
        for name in ("red", "green", "blue", "cat", "dog"):
            self.store.add(name, image_vector(name.encode()), photo_description=f"a {name} photo",
                           photo_location_country="Spain" if name in ("red", "cat") else "France")

    def enqueue(self, job_id, photos, batch_size):
        batches = math.ceil(len(photos) / batch_size)
        self.enqueued.append((job_id, len(photos), batches))
        return batches

    async def fetch(self, url):
        if url not in self.urls:
            raise FetchError("http_404", f"{url} answered HTTP 404 (not found).")
        return self.urls[url]

    def services(self) -> Services:
        return Services(embedder=self.embedder, store=self.store, jobs=self.jobs, enqueue=self.enqueue,
                        fetch=self.fetch, model_info_ttl_s=0, table_info_ttl_s=0)


def make_settings(**overrides) -> ApiSettings:
    values = {"api_keys": KEY, "max_image_bytes": 4096, **overrides}
    return ApiSettings(**values)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def client(fakes):
    with TestClient(create_app(make_settings(), services=fakes.services())) as test_client:
        yield test_client


def error_of(response) -> dict:
    return response.json()["error"]


# -- search: what is accepted ---------------------------------------------------------------------

def test_text_search_ranks_by_similarity_and_says_weights_are_random(client, fakes):
    fakes.store.add("match", text_vector("a red bicycle"))
    body = client.post("/v1/search", json={"text": "a red bicycle", "top_k": 3}).json()
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert body["results"][0]["photo_id"] == "match"
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert body["results"][0]["photo_image_url"] == "http://img.test/match.jpg"
    assert body["model"] == "fake-clip" and body["random_weights"] is True
    assert "random weights" in body["notice"]
    assert body["took_ms"] >= 0


def test_trained_model_gives_no_notice(client, fakes):
    fakes.embedder.random_weights = False
    body = client.post("/v1/search", json={"text": "red"}).json()
    assert body["random_weights"] is False and body["notice"] is None


def test_multipart_image_search_finds_the_same_image_first(client):
    response = client.post("/v1/search", files={"image": ("q.jpg", b"blue", "image/jpeg")}, data={"top_k": "2"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    assert results[0]["photo_id"] == "blue" and results[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_json_base64_image_search(client):
    response = client.post("/v1/search", json={"image_base64": base64.b64encode(b"green").decode()})
    assert response.json()["results"][0]["photo_id"] == "green"


def test_text_and_image_are_combined_by_weight(client, fakes):
    for weight in (0.5, 0.2):
        client.post("/v1/search", files={"image": ("q", b"cat", "image/png")},
                    data={"text": "a dog", "weight": str(weight)})
        expected = combine(text_vector("a dog"), image_vector(b"cat"), weight)
        np.testing.assert_allclose(fakes.store.queries[-1], expected, atol=1e-6)
    # The default is the seed's rule: the mean of the two unit vectors, normalised again.
    client.post("/v1/search", json={"text": "a dog", "image_base64": base64.b64encode(b"cat").decode()})
    mean = text_vector("a dog") + image_vector(b"cat")
    np.testing.assert_allclose(fakes.store.queries[-1], mean / np.linalg.norm(mean), atol=1e-6)


def test_weight_one_is_the_image_alone(client):
    body = client.post("/v1/search", files={"image": ("q", b"dog", "image/png")},
                       data={"text": "anything", "weight": "1"}).json()
    assert body["results"][0]["photo_id"] == "dog"
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_photo_id_search_returns_the_photo_itself_first(client):
    results = client.post("/v1/search", json={"photo_id": "cat", "top_k": 5}).json()["results"]
    assert results[0]["photo_id"] == "cat" and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(results) == 5


def test_image_url_is_fetched(client, fakes):
    fakes.urls["https://example.test/red.jpg"] = b"red"
    body = client.post("/v1/search", json={"image_url": "https://example.test/red.jpg"}).json()
    assert body["results"][0]["photo_id"] == "red"


def test_filters_and_min_score_narrow_results(client):
    body = client.post("/v1/search", json={"text": "x", "filters": {"photo_location_country": "Spain"}}).json()
    assert {r["photo_id"] for r in body["results"]} == {"red", "cat"}
    body = client.post("/v1/search", json={"photo_id": "dog", "min_score": 0.999}).json()
    assert [r["photo_id"] for r in body["results"]] == ["dog"]
    form = client.post("/v1/search", data={"text": "x", "filters": '{"photo_location_country": "France"}'}).json()
    assert {r["photo_id"] for r in form["results"]} == {"green", "blue", "dog"}


def test_pages_follow_each_other_and_ranks_count_from_the_first(client):
    everything = client.post("/v1/search", json={"photo_id": "dog", "top_k": 4}).json()["results"]
    first = client.post("/v1/search", json={"photo_id": "dog", "top_k": 2}).json()
    second = client.post("/v1/search", json={"photo_id": "dog", "top_k": 2, "offset": 2}).json()
    assert [r["photo_id"] for r in first["results"] + second["results"]] == [r["photo_id"] for r in everything]
    assert [r["rank"] for r in second["results"]] == [3, 4] and second["offset"] == 2
    form = client.post("/v1/search", data={"photo_id": "dog", "top_k": "2", "offset": "2"}).json()
    assert form["results"] == second["results"]


def test_collapse_reaches_the_store_and_folds_near_duplicates(client, fakes):
    fakes.store.add("dog-again", fakes.store.photos["dog"][1] + 0.01)
    plain = [r["photo_id"] for r in client.post("/v1/search", json={"photo_id": "dog", "top_k": 3}).json()["results"]]
    assert plain[:2] == ["dog", "dog-again"]
    body = client.post("/v1/search", json={"photo_id": "dog", "top_k": 3, "collapse": 0.95}).json()
    assert [r["photo_id"] for r in body["results"]][0] == "dog" and "dog-again" not in str(body["results"])
    assert fakes.store.options == {"offset": 0, "collapse": 0.95}
    client.post("/v1/search", data={"text": "x", "collapse": "0.9"})
    assert fakes.store.options["collapse"] == 0.9


def test_empty_store_gives_no_results_not_an_error(fakes):
    fakes.store.photos.clear()
    with TestClient(create_app(make_settings(), services=fakes.services())) as client:
        assert client.post("/v1/search", json={"text": "x"}).json()["results"] == []
        response = client.get("/v1/photos/random")
        assert response.status_code == 404 and "no photos yet" in error_of(response)["message"]


# -- search: what is refused, with its sentence ----------------------------------------------------

@pytest.mark.parametrize("body", [{}, {"text": "   "}, {"top_k": 5}, {"text": "", "photo_id": " "}])
def test_nothing_to_search_by_is_a_422_sentence(client, body):
    response = client.post("/v1/search", json=body)
    assert response.status_code == 422
    assert error_of(response)["message"] == NOTHING_TO_SEARCH


def test_empty_multipart_query_is_the_same_422(client):
    response = client.post("/v1/search", data={"text": "", "top_k": "3"})
    assert response.status_code == 422 and error_of(response)["message"] == NOTHING_TO_SEARCH


@pytest.mark.parametrize("field, value, sentence", [
    ("top_k", 0, "top_k must be between 1 and 100"),
    ("top_k", 101, "top_k must be between 1 and 100"),
    ("weight", 1.5, "weight must be between 0 and 1"),
    ("weight", -0.1, "weight must be between 0 and 1"),
    ("min_score", 2, "min_score must be between -1 and 1"),
    ("offset", -1, "offset must be between 0 and 1000"),
    ("offset", 1001, "offset must be between 0 and 1000"),
    ("collapse", 1.5, "collapse must be between 0 and 1"),
    ("filters", {"password": "x"}, "Cannot filter on 'password': filters may only name the metadata fields"),
    ("colour", "red", "colour is not a search field"),
])
def test_out_of_range_fields_are_422_sentences(client, field, value, sentence):
    response = client.post("/v1/search", json={"text": "x", field: value})
    assert response.status_code == 422
    assert sentence in error_of(response)["message"]
    assert error_of(response)["message"].endswith(".")


def test_bad_base64_is_422(client):
    response = client.post("/v1/search", json={"image_base64": "not base64!!"})
    assert response.status_code == 422 and "not valid base64" in error_of(response)["message"]


def test_body_that_is_not_json_is_422(client):
    response = client.post("/v1/search", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in error_of(response)["message"]


def test_unsupported_content_type_is_415(client):
    response = client.post("/v1/search", content=b"text=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_oversized_images_are_413(client):
    big = b"x" * 5000  # the test gateway accepts 4096 bytes
    response = client.post("/v1/search", files={"image": ("big", big, "image/jpeg")})
    assert response.status_code == 413 and "larger than" in error_of(response)["message"]
    response = client.post("/v1/search", json={"image_base64": base64.b64encode(big).decode()})
    assert response.status_code == 413


def test_a_file_that_is_not_an_image_is_the_embedders_422(client):
    response = client.post("/v1/search", files={"image": ("x", b"not an image", "image/jpeg")})
    assert response.status_code == 422 and "not an image" in error_of(response)["message"]


def test_unknown_photo_id_is_404(client):
    response = client.post("/v1/search", json={"photo_id": "nope"})
    assert response.status_code == 404 and "nope" in error_of(response)["message"]


def test_unfetchable_image_url_is_422_and_non_http_is_refused(client):
    response = client.post("/v1/search", json={"image_url": "https://example.test/missing.jpg"})
    assert response.status_code == 422 and "404" in error_of(response)["message"]
    response = client.post("/v1/search", json={"image_url": "file:///etc/passwd"})
    assert response.status_code == 422 and "http or https" in error_of(response)["message"]


def test_image_and_image_url_together_are_refused(client):
    response = client.post("/v1/search", json={"image_url": "https://a.test/x.jpg",
                                               "image_base64": base64.b64encode(b"red").decode()})
    assert response.status_code == 422 and "not both" in error_of(response)["message"]


def test_embedder_down_is_503_with_retry_after_and_timeout_is_504(client, fakes):
    fakes.embedder.failure = DependencyUnavailable("The embedder at http://e.test cannot be reached.")
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "cannot be reached" in error_of(response)["message"]
    fakes.embedder.failure = DependencyTimeout("The embedder did not answer within 30 s.")
    assert client.post("/v1/search", json={"text": "x"}).status_code == 504


def test_store_down_is_503(client, fakes):
    fakes.store.down = True
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 503 and "store" in error_of(response)["message"]


def test_table_of_another_model_is_refused(client, fakes):
    fakes.store.table_info = lambda: {"model": "other-clip", "dim": DIM}
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 409 and "other-clip" in error_of(response)["message"]


# -- photos, stats ---------------------------------------------------------------------------------

def test_photos_and_stats(client, fakes):
    photo = client.get("/v1/photos/cat").json()
    assert photo["photo_id"] == "cat" and photo["photo_description"] == "a cat photo" and "vector" not in photo
    assert client.get("/v1/photos/random").json()["photo_id"] in fakes.store.photos
    missing = client.get("/v1/photos/nope")
    assert missing.status_code == 404 and "nope" in error_of(missing)["message"]
    stats = client.get("/v1/stats").json()
    assert stats["photos"] == 5 and stats["model"]["name"] == "fake-clip" and stats["random_weights"] is True
    assert stats["table"] == {"model": "fake-clip", "dim": DIM}


def test_a_random_photo_can_be_drawn_within_filters(client, fakes):
    spain = json.dumps({"photo_location_country": "Spain"})
    drawn = {client.get("/v1/photos/random", params={"filters": spain}).json()["photo_id"] for _ in range(12)}
    assert drawn == {"red", "cat"}
    nowhere = client.get("/v1/photos/random", params={"filters": json.dumps({"photo_location_country": "Chad"})})
    assert nowhere.status_code == 404 and error_of(nowhere) == {
        "code": "no_match", "message": "No stored photo matches these filters; loosen or clear them.",
        "request_id": nowhere.headers["X-Request-ID"]}
    not_json = client.get("/v1/photos/random", params={"filters": "country=Spain"})
    assert not_json.status_code == 422 and error_of(not_json)["code"] == "invalid_filter"
    assert error_of(not_json)["message"].startswith("filters must be a JSON object, e.g.")
    unknown = client.get("/v1/photos/random", params={"filters": '{"colour": "red"}'})
    assert unknown.status_code == 422 and "Cannot filter on 'colour'" in error_of(unknown)["message"]
    # Empty filters are no filters.
    assert client.get("/v1/photos/random", params={"filters": ""}).json()["photo_id"] in fakes.store.photos


@pytest.mark.parametrize("bad, words", [
    ({"colour": "red"}, "Cannot filter on 'colour'"),
    ({"photo_width": "wide"}, "The filter on 'photo_width' needs a number, not 'wide'."),
    ({"photo_location_city": {"between": 1}}, "Unknown filter operator 'between' on 'photo_location_city'"),
    ("Spain", "filters must be a JSON object"),
])
def test_a_bad_filter_gets_the_same_answer_on_every_route(client, bad, words):
    text = json.dumps(bad)
    answers = [
        client.post("/v1/search", json={"text": "x", "filters": bad}),
        client.post("/v1/search", data={"text": "x", "filters": text}),
        client.get("/v1/photos/random", params={"filters": text}),
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert error_of(response)["code"] == "invalid_filter"
        assert words in error_of(response)["message"] and error_of(response)["message"].endswith(".")


def test_stats_while_the_embedder_is_down(client, fakes):
    fakes.embedder.failure = DependencyUnavailable("down")
    stats = client.get("/v1/stats").json()
    assert stats["photos"] == 5 and stats["model"] is None and stats["random_weights"] is False


# -- ingestion and keys ----------------------------------------------------------------------------

PHOTOS = [{"photo_id": f"p{i}", "photo_image_url": f"http://img.test/p{i}.jpg"} for i in range(70)]


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


def test_no_configured_keys_means_no_writes(fakes):
    with TestClient(create_app(make_settings(api_keys=""), services=fakes.services())) as client:
        response = client.post("/v1/ingest", json={"photos": PHOTOS}, headers={"X-API-Key": "anything"})
        assert response.status_code == 401 and "API_KEYS" in error_of(response)["message"]


def test_reads_need_a_key_when_configured(fakes):
    app = create_app(make_settings(require_key_for_reads=True), services=fakes.services())
    with TestClient(app) as client:
        assert client.post("/v1/search", json={"text": "x"}).status_code == 401
        assert client.get("/v1/photos/random").status_code == 401
        assert client.get("/v1/stats").status_code == 401
        assert client.post("/v1/search", json={"text": "x"}, headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/healthz").status_code == 200


# -- health, metrics, docs -------------------------------------------------------------------------

def test_health_ready_and_metrics(client, fakes):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    fakes.store.down = True
    response = client.get("/readyz")
    assert response.status_code == 503 and "store" in error_of(response)["message"]
    assert response.json()["checks"]["embedder"] == "ok"
    client.get("/v1/photos/cat")
    metrics = client.get("/metrics").text
    assert 'api_requests_total{method="GET",route="/v1/photos/{photo_id}",status="503"}' in metrics
    assert "api_request_duration_seconds_bucket" in metrics
    assert client.get("/docs").status_code == 200
    assert "multipart/form-data" in client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]["requestBody"]["content"]


def test_no_cors_headers_by_default(client):
    response = client.get("/healthz", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in response.headers


# -- the client ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_gateway(fakes):
    """The gateway with fake adapters on a real port, so ApiClient speaks real HTTP."""
    port = _free_port()
    app = create_app(make_settings(), services=fakes.services())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_api_client_round_trip(served_gateway, fakes):
    with ApiClient(served_gateway, api_key=KEY) as api:
        assert api.ready()
        assert api.search(text="x", top_k=2)["results"][1]["rank"] == 2
        assert api.search(image=b"dog")["results"][0]["photo_id"] == "dog"
        both = api.search(text="a dog", image=b"cat", weight=0.2, filters={"photo_location_country": "Spain"})
        assert {r["photo_id"] for r in both["results"]} == {"red", "cat"}
        assert api.search(photo_id="red")["results"][0]["photo_id"] == "red"
        assert api.get_photo("cat")["photo_id"] == "cat"
        assert api.random_photo()["photo_id"]
        assert api.stats()["photos"] == 5
        job = api.ingest(PHOTOS[:5], batch_size=2)
        assert job["batches"] == 3 and api.job(job["job_id"])["total"] == 5


def test_api_client_errors_carry_the_servers_sentence(served_gateway):
    with ApiClient(served_gateway) as api:
        with pytest.raises(ApiError) as caught:
            api.search(text="  ")
        assert (caught.value.status, caught.value.code, caught.value.message) == (422, "empty_query", NOTHING_TO_SEARCH)
        with pytest.raises(ApiError) as caught:
            api.ingest(PHOTOS[:1])
        assert caught.value.status == 401
        with pytest.raises(ApiError) as caught:
            api.get_photo("no/such photo")
        assert caught.value.status == 404 and "no/such photo" in caught.value.message


def test_api_client_names_an_unreachable_gateway():
    url = f"http://127.0.0.1:{_free_port()}"
    with ApiClient(url, timeout=2) as api:
        assert api.ready() is False
        with pytest.raises(ApiError) as caught:
            api.stats()
    assert caught.value.status == 0 and url in caught.value.message


def test_a_chunked_body_over_the_limit_is_413(client):
    # No Content-Length to check up front: the gateway must stop reading, not buffer it all.
    chunks = (b" " * 65536 for _ in range(8))
    response = client.post("/v1/search", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
