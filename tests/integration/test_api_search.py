"""The real gateway in front of a real embedder (tiny random CLIP) and the real embedded store.

Each runs as its own process on a free port; photos go into the store through PhotoStore directly
(ingestion by workers is the end-to-end test's business), then a user searches through ApiClient.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from services.common.api_client import ApiClient, ApiError
from services.common.embedder_client import EmbedderClient
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from tests.support import free_port, redis_server, service_process
from tools.sample_data import draw_photo, serve

ROOT = Path(__file__).resolve().parents[2]
KEY = "integration-key"
COUNT = 8
TABLE = "photos_api_test"


@contextmanager
def service(name: str, args: list[str], env: dict[str, str], log_dir: Path, ready_url: str):
    """One service as a subprocess; its log is shown if it fails to come up."""
    with service_process(args, ready_url, log_dir / f"{name}.log", env=env):
        yield


@dataclass
class Gateway:
    url: str
    images_url: str
    photos: dict[str, bytes]
    embedder_url: str = ""
    redis_url: str = ""
    store_url: str = ""


def jpeg(index: int) -> bytes:
    image, _ = draw_photo(index)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, tiny_model_dir) -> Gateway:
    workdir = tmp_path_factory.mktemp("api-integration")
    images_dir = workdir / "images"
    images_dir.mkdir()
    photos = {f"photo-{i}": jpeg(i) for i in range(COUNT)}
    for photo_id, data in photos.items():
        (images_dir / f"{photo_id}.jpg").write_bytes(data)
    image_server, _ = serve(images_dir)
    images_url = f"http://127.0.0.1:{image_server.server_address[1]}"
    ports = {name: free_port() for name in ("store", "embedder", "api")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with redis_server(workdir) as redis_url:
        env = {**os.environ, "STORE_URL": urls["store"], "STORE_TABLE": TABLE, "EMBEDDER_URL": urls["embedder"],
               "EMBEDDER_MODEL": str(tiny_model_dir), "EMBEDDER_DEVICE": "cpu", "EMBEDDER_TORCH_THREADS": "1",
               "REDIS_URL": redis_url, "API_KEYS": KEY, "FETCH_ALLOW_HOSTS": "127.0.0.1",
               "API_TEXT_CACHE_REDIS": "true",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        uvicorn = ["-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port"]
        with service("store", ["-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(ports["store"]),
                               "--data-dir", str(workdir / "store")], env, workdir, f"{urls['store']}/ping"), \
             service("embedder", [*uvicorn, str(ports["embedder"]), "services.embedder.main:create_app"], env,
                     workdir, f"{urls['embedder']}/readyz"), \
             service("api", [*uvicorn, str(ports["api"]), "services.api.main:create_app"], env, workdir,
                     f"{urls['api']}/healthz"):
            _store_photos(urls["store"], urls["embedder"], photos, images_url)
            yield Gateway(url=urls["api"], images_url=images_url, photos=photos, embedder_url=urls["embedder"],
                          redis_url=redis_url, store_url=urls["store"])
    image_server.shutdown()


def _store_photos(store_url: str, embedder_url: str, photos: dict[str, bytes], images_url: str) -> None:
    with EmbedderClient(embedder_url) as embedder:
        info = embedder.model_info()
        vectors = embedder.embed_images(list(photos.values()))
    store = PhotoStore(store_url, TABLE)
    try:
        store.ensure_table(info["dim"], info["name"])
        records = [PhotoRecord(photo_id=photo_id, photo_image_url=f"{images_url}/{photo_id}.jpg",
                               photo_description=f"sample photo {i}",
                               photo_location_country="Spain" if i % 2 else "Peru")
                   for i, photo_id in enumerate(photos)]
        store.insert_photos(records, vectors)
    finally:
        store.close()


@pytest.fixture
def api(gateway):
    with ApiClient(gateway.url) as client:
        yield client


def test_ready_and_stats(api):
    assert api.ready()
    stats = api.stats()
    assert stats["photos"] == COUNT
    assert stats["random_weights"] is True and stats["model"]["random_weights"] is True
    assert stats["table"]["dim"] == stats["model"]["dim"]


def test_text_search_ranks_and_warns_about_random_weights(api):
    body = api.search(text="a red circle on a blue background", top_k=5)
    results = body["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert body["random_weights"] is True and "random weights" in body["notice"]
    assert results[0]["photo_description"].startswith("sample photo")


def test_image_search_finds_the_same_photo_first(api, gateway):
    for photo_id in ("photo-2", "photo-5"):
        results = api.search(image=gateway.photos[photo_id], top_k=3)["results"]
        assert results[0]["photo_id"] == photo_id
        assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_text_and_image_together(api, gateway):
    image = gateway.photos["photo-3"]
    alone = api.search(image=image, top_k=COUNT)["results"]
    # weight 1 is the image alone; any mix still returns as many ranked results.
    assert [r["photo_id"] for r in api.search(text="a cat", image=image, weight=1.0, top_k=COUNT)["results"]] == \
        [r["photo_id"] for r in alone]
    mixed = api.search(text="a cat", image=image, top_k=COUNT)["results"]
    assert len(mixed) == COUNT and mixed[0]["score"] < alone[0]["score"]


def test_photo_id_and_image_url_search(api, gateway):
    assert api.search(photo_id="photo-4", top_k=2)["results"][0]["photo_id"] == "photo-4"
    by_url = api.search(image_url=f"{gateway.images_url}/photo-6.jpg", top_k=2)["results"]
    assert by_url[0]["photo_id"] == "photo-6"


def test_weighted_terms_through_the_real_embedder_and_store(api, gateway):
    """A stored photo, an uploaded image and a text, weighted; the photo_id term is summed in SQL."""
    terms = [{"photo_id": "photo-2", "weight": 2}, {"image": gateway.photos["photo-5"], "weight": 0.5},
             {"text": "a red circle", "weight": -0.5}]
    results = api.search(terms=terms, top_k=COUNT)["results"]
    assert results[0]["photo_id"] == "photo-2" and len(results) == COUNT
    # The same photo, minus itself: nothing left to search by.
    with pytest.raises(ApiError) as refused:
        api.search(terms=[{"photo_id": "photo-2", "weight": 1}, {"photo_id": "photo-2", "weight": -1}])
    assert refused.value.status == 422 and refused.value.code == "terms_cancel_out"


def test_filters_reach_the_store(api):
    results = api.search(text="anything", top_k=COUNT, filters={"photo_location_country": "Spain"})["results"]
    assert len(results) == COUNT // 2
    assert {r["photo_location_country"] for r in results} == {"Spain"}


def test_facets_list_what_a_filter_can_match(api, gateway):
    assert api.facet("photo_location_country") == [{"value": "Peru", "photos": 4}, {"value": "Spain", "photos": 4}]
    assert api.facet("photo_location_country", limit=1) == [{"value": "Peru", "photos": 4}]
    assert api.facet("photographer_username") == []  # nobody named: no values, not an error
    refused = httpx.get(f"{gateway.url}/v1/facets/photo_description", timeout=10)
    assert refused.status_code == 422
    assert "photo_location_country, photo_location_city, photographer_username" in refused.json()["error"]["message"]
    assert httpx.get(f"{gateway.url}/v1/facets/photo_location_country?limit=0", timeout=10).status_code == 422


def test_pages_and_collapse_through_the_real_store(gateway):
    def search(**fields):
        response = httpx.post(f"{gateway.url}/v1/search", json={"photo_id": "photo-4", **fields}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    everything = search(top_k=COUNT)["results"]
    second = search(top_k=3, offset=3)
    assert [r["photo_id"] for r in second["results"]] == [r["photo_id"] for r in everything[3:6]]
    assert [r["rank"] for r in second["results"]] == [4, 5, 6] and second["offset"] == 3
    # Collapsing at similarity 1.0 folds only identical vectors: every photo still comes back once.
    assert [r["photo_id"] for r in search(top_k=COUNT, collapse=1.0)["results"]] == [r["photo_id"] for r in everything]
    # At 0, a result stays only if it points away from every better one: fewer, the best still first.
    collapsed = search(top_k=COUNT, collapse=0.0)["results"]
    assert collapsed[0]["photo_id"] == "photo-4" and len(collapsed) < len(everything)


def test_photos_by_id_and_at_random(api, gateway):
    assert api.get_photo("photo-1")["photo_image_url"].endswith("/photo-1.jpg")
    assert api.random_photo()["photo_id"] in gateway.photos
    peru = {api.random_photo(filters={"photo_location_country": "Peru"})["photo_id"] for _ in range(6)}
    assert peru and all(api.get_photo(photo_id)["photo_location_country"] == "Peru" for photo_id in peru)
    with pytest.raises(ApiError) as caught:
        api.random_photo(filters={"photo_location_country": "Atlantis"})
    assert caught.value.status == 404 and caught.value.message == "No stored photo matches these filters; loosen or clear them."


def test_user_mistakes_get_sentences(api):
    with pytest.raises(ApiError) as caught:
        api.search(text="   ")
    assert caught.value.status == 422 and caught.value.message == "Give a text, an image, or a photo_id to search by."
    with pytest.raises(ApiError) as caught:
        api.search(image=b"this is not a picture")
    assert caught.value.status == 422
    with pytest.raises(ApiError) as caught:
        api.search(photo_id="no-such-photo")
    assert caught.value.status == 404
    with pytest.raises(ApiError) as caught:
        api.ingest([{"photo_id": "x", "photo_image_url": "http://x.test/x.jpg"}])
    assert caught.value.status == 401


def test_ingest_creates_a_job_in_redis(gateway):
    with ApiClient(gateway.url, api_key=KEY) as api:
        photos = [{"photo_id": f"new-{i}", "photo_image_url": f"{gateway.images_url}/photo-{i}.jpg"} for i in range(5)]
        accepted = api.ingest(photos, batch_size=2)
        assert accepted["photos"] == 5 and accepted["batches"] == 3
        job = api.job(accepted["job_id"])
        assert job["total"] == 5 and job["batches_total"] == 3


def _texts_embedded(gateway: Gateway) -> float:
    metrics = httpx.get(f"{gateway.embedder_url}/metrics", timeout=10).text
    found = re.search(r'^embedder_items_embedded_total\{kind="text"\} ([\d.e+]+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_repeated_text_and_its_next_page_skip_the_embedder_and_say_where_time_went(gateway):
    text = "a repeated query about a green square"

    def search(**fields):
        response = httpx.post(f"{gateway.url}/v1/search", json={"text": text, "top_k": 3, **fields}, timeout=30)
        assert response.status_code == 200, response.text
        return response

    before = _texts_embedded(gateway)
    first, again, page_two = search(), search(), search(offset=3)
    assert _texts_embedded(gateway) - before == 1
    assert [r["photo_id"] for r in again.json()["results"]] == [r["photo_id"] for r in first.json()["results"]]
    assert [r["rank"] for r in page_two.json()["results"]] == [4, 5, 6]
    for response in (first, again, page_two):
        timings = response.json()["timings"]
        assert set(timings) == {"embed_ms", "store_ms", "total_ms"} and timings["store_ms"] > 0
        assert re.fullmatch(r'embed;dur=[\d.]+, store;dur=[\d.]+(;desc="kept answer")?, total;dur=[\d.]+',
                            response.headers["server-timing"])
    # Shared in Redis (API_TEXT_CACHE_REDIS): the embedder's own vector, as float32 bytes under the
    # model's fingerprint, with a TTL.
    with EmbedderClient(gateway.embedder_url) as embedder:
        fingerprint = embedder.model_info()["fingerprint"]
        expected = np.asarray(embedder.embed_texts([text]), np.float32)[0]
    key = f"textvec:{fingerprint}:{hashlib.sha256(text.encode()).hexdigest()}"
    client = redis.Redis.from_url(gateway.redis_url)
    try:
        np.testing.assert_allclose(np.frombuffer(client.get(key), np.float32), expected, atol=1e-5)
        assert client.ttl(key) > 0
    finally:
        client.close()


def test_a_kept_answer_is_reused_until_the_table_changes(gateway):
    """The gateway keeps a search's answer and reuses it while the store's table is unchanged; a photo
    written or deleted behind its back (a worker, another gateway) is seen at the very next query."""
    text = "a kept answer about a yellow triangle"

    def search(**headers) -> dict:
        response = httpx.post(f"{gateway.url}/v1/search", json={"text": text, "top_k": 3}, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(answer: dict) -> list[str]:
        return [r["photo_id"] for r in answer["results"]]

    first, again = search(), search()
    assert (first["cached"], again["cached"]) == (False, True) and again["results"] == first["results"]
    assert search(**{"Cache-Control": "no-cache"})["cached"] is False
    with EmbedderClient(gateway.embedder_url) as embedder:
        vector = np.asarray(embedder.embed_texts([text]), np.float32)
    store = PhotoStore(gateway.store_url, TABLE)
    try:
        store.insert_photos([PhotoRecord(photo_id="photo-new", photo_image_url=f"{gateway.images_url}/photo-0.jpg")],
                            vector)
        added = search()
        assert added["cached"] is False and ids(added)[0] == "photo-new"
        assert search()["cached"] is True
        store.delete_photos(["photo-new"])
        deleted = search()
        assert deleted["cached"] is False and ids(deleted) == ids(first)
    finally:
        store.delete_photos(["photo-new"])
        store.close()
