"""Unit tests of the gateway's text vector cache (services/api/textcache.py) and of the timings every
search answers with: a repeated text, or its next page, never reaches the embedder; a new model's
fingerprint does; the LRU keeps only its bound; a terms query sends only the texts not yet cached."""
from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from services.api.textcache import TextVectorCache
from tests.fakes import text_vector
from tests.support import free_port
from tests.unit.api_support import GatewayFakes, make_settings


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


def _client(fakes: GatewayFakes, cache: TextVectorCache | None = None) -> TestClient:
    services = fakes.services()
    if cache is not None:
        services.text_cache = cache
    return TestClient(create_app(make_settings(), services=services))


def _search(client: TestClient, **body) -> dict:
    response = client.post("/v1/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_repeated_text_and_its_next_page_do_not_reach_the_embedder(fakes):
    with _client(fakes) as client:
        first = _search(client, text="a red car", top_k=2)
        again = _search(client, text="a red car", top_k=2)
        page_two = _search(client, text="a red car", top_k=2, offset=2)
    assert fakes.embedder.texts == [["a red car"]]
    assert [r["photo_id"] for r in again["results"]] == [r["photo_id"] for r in first["results"]]
    assert page_two["offset"] == 2 and page_two["results"][0]["rank"] == 3
    # The cached vector is the embedder's: the store was asked with the same vector each time.
    np.testing.assert_allclose(fakes.store.queries[-1], fakes.store.queries[0], atol=1e-6)


def test_a_new_model_fingerprint_asks_the_embedder_again(fakes):
    with _client(fakes) as client:
        _search(client, text="a dog")
        fakes.embedder.fingerprint = "beef"
        _search(client, text="a dog")
        _search(client, text="a dog")
    assert fakes.embedder.texts == [["a dog"], ["a dog"]]


def test_a_new_text_tower_over_the_same_image_model_asks_the_embedder_again(fakes):
    # The image model (and so the table) stays; only the tower that embeds queries changes.
    with _client(fakes) as client:
        _search(client, text="un perro")
        fakes.embedder.info_extra = {"text_model": "multilingual", "text_fingerprint": "cafe"}
        _search(client, text="un perro")
        _search(client, text="un perro")
        fakes.embedder.info_extra = {"text_model": "multilingual", "text_fingerprint": "d00d"}
        _search(client, text="un perro")
    assert fakes.embedder.texts == [["un perro"]] * 3


def test_the_cache_keeps_only_its_bound_of_texts_least_recently_used_out(fakes):
    cache = TextVectorCache(2)
    with _client(fakes, cache) as client:
        for text in ("one", "two", "three", "three", "two", "one"):
            _search(client, text=text)
    # "one" was the least recently used when "three" came in, so it was asked for again at the end.
    assert fakes.embedder.texts == [["one"], ["two"], ["three"], ["one"]]
    assert len(cache) == 2


def test_size_zero_turns_the_cache_off(fakes):
    with _client(fakes, TextVectorCache(0)) as client:
        _search(client, text="a cat")
        _search(client, text="a cat")
    assert fakes.embedder.texts == [["a cat"], ["a cat"]]


def test_a_terms_query_sends_only_its_uncached_texts_in_one_call(fakes):
    with _client(fakes) as client:
        _search(client, text="a beach")
        answer = _search(client, terms=[{"text": "a beach", "weight": 1}, {"text": "people", "weight": -0.5},
                                        {"text": "people", "weight": -0.5}])
    assert fakes.embedder.texts == [["a beach"], ["people"]]
    assert answer["results"]
    expected = text_vector("a beach") - text_vector("people")
    np.testing.assert_allclose(fakes.store.queries[-1], expected / np.linalg.norm(expected), atol=1e-5)


def test_every_search_answers_with_timings_and_a_server_timing_header(fakes):
    with _client(fakes) as client:
        response = client.post("/v1/search", json={"text": "a red car"})
    assert response.status_code == 200
    timings = response.json()["timings"]
    assert set(timings) == {"embed_ms", "store_ms", "total_ms"}
    assert all(value >= 0 for value in timings.values())
    assert timings["total_ms"] >= timings["store_ms"] and timings["total_ms"] == response.json()["took_ms"]
    header = response.headers["server-timing"]
    assert re.fullmatch(r"embed;dur=[\d.]+, store;dur=[\d.]+, total;dur=[\d.]+", header), header
    assert f"total;dur={timings['total_ms']}" in header


def test_the_search_schema_documents_the_timings(fakes):
    with _client(fakes) as client:
        schema = client.get("/openapi.json").json()
    timings = schema["components"]["schemas"]["SearchTimings"]["properties"]
    assert set(timings) == {"embed_ms", "store_ms", "total_ms"}
    assert "timings" in schema["components"]["schemas"]["SearchResponse"]["required"]


def test_redis_down_falls_back_to_the_local_cache_with_a_log_line(caplog):
    # Nothing listens on this loopback port: every Redis call fails at once.
    cache = TextVectorCache(10, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    asked: list[list[str]] = []

    async def embed(texts):
        asked.append(list(texts))
        return np.stack([text_vector(text) for text in texts])

    async def twice():
        with caplog.at_level(logging.WARNING, logger="services.api.textcache"):
            first = await cache.embed("f00d", ["sunset"], embed)
            second = await cache.embed("f00d", ["sunset"], embed)
        await cache.aclose()
        return first, second

    first, second = asyncio.run(twice())
    np.testing.assert_allclose(first, second)
    assert asked == [["sunset"]]
    assert any("Redis cannot be reached" in record.getMessage() for record in caplog.records)
