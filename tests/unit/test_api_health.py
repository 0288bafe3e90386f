"""Unit tests of the gateway's keys, health, metrics and docs with fake adapters, and of `ApiClient`
speaking real HTTP to it.
"""
from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from services.api.main import create_app
from services.api.query import NOTHING_TO_SEARCH
from services.common.api_client import ApiClient, ApiError
from services.common.api_models import Stats
from tests.fakes import MULTILINGUAL_TEXT_TOWER
from tests.support import free_port
from tests.unit.api_support import KEY, PHOTOS, error_of, gateway_client, make_settings, text_vector

# -- keys ------------------------------------------------------------------------------------------

def test_no_configured_keys_means_no_writes(fakes):
    with gateway_client(fakes, api_keys="") as client:
        response = client.post("/v1/ingest", json={"photos": PHOTOS}, headers={"X-API-Key": "anything"})
        assert response.status_code == 401 and "API_KEYS" in error_of(response)["message"]


def test_reads_need_a_key_when_configured(fakes):
    with gateway_client(fakes, require_key_for_reads=True) as client:
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
    url = f"http://127.0.0.1:{free_port()}"
    with ApiClient(url, timeout=2) as api:
        assert api.ready() is False
        with pytest.raises(ApiError) as caught:
            api.stats()
    assert caught.value.status == 0 and url in caught.value.message


def test_api_client_typed_answers(served_gateway, fakes):
    fakes.store.add("beach", text_vector("a beach"), photo_url="https://unsplash.test/beach",
                    photographer_first_name="Ana", photographer_last_name="Lopez")
    with ApiClient(served_gateway, api_key=KEY) as api:
        results = api.search_results(terms=[{"text": "a beach", "weight": 2}, {"photo_id": "red", "weight": -0.5}],
                                     top_k=3)
        best = results.results[0]
        assert (best.photo_id, best.rank, best.photographer, best.link) == \
            ("beach", 1, "Ana Lopez", "https://unsplash.test/beach")
        assert results.random_weights is True and results.took_ms >= 0
        assert api.typed.get_photo("cat").photo_id == "cat"
        stats = api.typed.stats()
        assert stats.photos == 6 and stats.model.name == "fake-clip"
        # The fake plays an older embedder: no text tower named, so the image model embeds texts too.
        assert (stats.model.text_tower, stats.model.separate_text_tower, stats.model.languages) == \
            ("fake-clip", False, None)
        assert {v.value: v.photos for v in api.typed.facet("photo_location_country")}["Spain"] == 2
        accepted = api.typed.ingest(PHOTOS[:3], batch_size=2)
        assert accepted.batches == 2 and api.typed.job(accepted.job_id).total == 3
        assert api.typed.readiness().ready is True and api.health() == {"status": "ok"}
        assert "# TYPE" in api.metrics()


def test_typed_stats_read_a_body_with_or_without_the_text_towers_fields():
    old = Stats.model_validate({"photos": 3, "random_weights": False, "table": None,
                                "model": {"name": "openai/clip-vit-base-patch32", "dim": 512, "device": "cpu"}})
    assert old.model.text_tower == "openai/clip-vit-base-patch32" and old.model.languages is None
    assert old.model.text_model is None and not old.model.separate_text_tower
    new = Stats.model_validate({"photos": 3, "model": {"name": "openai/clip-vit-base-patch32", "dim": 512,
                                                       **MULTILINGUAL_TEXT_TOWER, "pixel_input": None}})
    assert new.model.text_tower == MULTILINGUAL_TEXT_TOWER["text_model"] and new.model.separate_text_tower
    assert new.model.languages == MULTILINGUAL_TEXT_TOWER["languages"] and new.model.max_text_tokens == 128
    assert new.model.model_extra == {"pixel_input": None}  # kept: a newer gateway's fields do no harm
    assert Stats.model_validate({"photos": 0, "model": None}).model is None


def test_api_client_sends_term_images_as_files(served_gateway, fakes):
    with ApiClient(served_gateway) as api:
        body = api.search(terms=[{"image": b"dog", "weight": 1}], top_k=1)
        both = api.search(image=b"cat", terms=[{"image": b"dog", "weight": 1}, {"text": "x", "weight": 0.1}], top_k=2)
    assert body["results"][0]["photo_id"] == "dog"
    assert {r["photo_id"] for r in both["results"]} == {"cat", "dog"}


def test_api_client_reports_retry_after_of_a_rate_limit(fakes):
    port = free_port()
    app = create_app(make_settings(rate_limit="1/minute", rate_limit_storage="memory://"), services=fakes.services())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with ApiClient(f"http://127.0.0.1:{port}", rate_limit_wait=0) as api:  # 0: the 429 at once, not waited out
            api.stats()
            with pytest.raises(ApiError) as caught:
                api.stats()
        assert caught.value.status == 429 and caught.value.retry_after >= 1
        assert "try again in" in caught.value.message
    finally:
        server.should_exit = True
        thread.join(5)
