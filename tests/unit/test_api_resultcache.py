"""Unit tests of the gateway's result cache (services/api/resultcache.py): a repeated query and its
"Load more" pages are answered without the store's search, with the same results; any change to the
stored photos is seen at the next query; `Cache-Control: no-cache`, another filter or another model's
vector reaches the store; the cache keeps its bound, and size 0 turns it off."""
from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from services.api.resultcache import ResultCache, answer_key
from tests.fakes import image_vector
from tests.unit.api_support import GatewayFakes, make_settings


@pytest.fixture
def fakes() -> GatewayFakes:
    fakes = GatewayFakes()
    for number in range(40):
        fakes.store.add(f"extra-{number:02d}", image_vector(f"extra {number}".encode()))
    return fakes


def _client(fakes: GatewayFakes, cache: ResultCache | None = None) -> TestClient:
    services = fakes.services()
    if cache is not None:
        services.result_cache = cache
    return TestClient(create_app(make_settings(), services=services))


def _search(client: TestClient, headers: dict | None = None, **body) -> dict:
    response = client.post("/v1/search", json=body, headers=headers or {})
    assert response.status_code == 200, response.text
    return {**response.json(), "server_timing": response.headers["server-timing"]}


def _ids(answer: dict) -> list[str]:
    return [result["photo_id"] for result in answer["results"]]


def test_a_repeated_query_is_answered_without_the_store_search(fakes):
    with _client(fakes) as client:
        first = _search(client, text="a red car")
        again = _search(client, text="a red car")
    assert len(fakes.store.queries) == 1
    assert first["cached"] is False and again["cached"] is True
    assert again["results"] == first["results"] and len(first["results"]) == 10
    assert 'store;dur=' in again["server_timing"] and 'desc="kept answer"' in again["server_timing"]
    assert "desc=" not in first["server_timing"]


def test_load_more_pages_are_slices_of_the_first_answer_with_the_stores_ranks(fakes):
    with _client(fakes) as client:
        pages = [_search(client, text="a red car", top_k=10, offset=offset) for offset in (0, 10, 20)]
        fresh = [_search(client, {"Cache-Control": "no-cache"}, text="a red car", top_k=10, offset=offset)
                 for offset in (0, 10, 20)]
    # One search for the three pages (asked 50 deep), then three more for the no-cache ones.
    assert len(fakes.store.queries) == 4
    assert [page["cached"] for page in pages] == [False, True, True]
    assert [page["cached"] for page in fresh] == [False, False, False]
    for page, truth in zip(pages, fresh):
        assert page["results"] == truth["results"]
    assert [r["rank"] for r in pages[2]["results"]] == list(range(21, 31))
    assert len({photo for page in pages for photo in _ids(page)}) == 30


def test_a_page_past_the_kept_depth_asks_the_store_again_and_a_short_answer_serves_any_page(fakes):
    with _client(fakes, ResultCache(16, depth=20)) as client:
        _search(client, text="a dog", top_k=10)
        deep = _search(client, text="a dog", top_k=10, offset=20)
        assert deep["cached"] is False and [r["rank"] for r in deep["results"]] == list(range(21, 31))
        # Only red and cat are in Spain: the kept answer is complete, so every page of it is a slice.
        _search(client, text="a dog", filters={"photo_location_country": "Spain"})
        empty = _search(client, text="a dog", filters={"photo_location_country": "Spain"}, offset=40)
    assert empty["cached"] is True and empty["results"] == []
    assert len(fakes.store.queries) == 3


def test_a_photo_added_or_deleted_is_seen_at_the_next_query(fakes):
    with _client(fakes) as client:
        before = _search(client, photo_id="dog", top_k=3)
        fakes.store.add("dog-twin", fakes.store.photos["dog"][1] + 0.001)
        added = _search(client, photo_id="dog", top_k=3)
        fakes.store.delete_photos(["dog-twin"])
        deleted = _search(client, photo_id="dog", top_k=3)
        again = _search(client, photo_id="dog", top_k=3)
    assert "dog-twin" not in _ids(before)
    assert added["cached"] is False and _ids(added)[:2] == ["dog", "dog-twin"]
    assert deleted["cached"] is False and "dog-twin" not in _ids(deleted)
    assert again["cached"] is True and again["results"] == deleted["results"]


def test_another_filter_min_score_or_collapse_is_another_answer(fakes):
    with _client(fakes) as client:
        plain = _search(client, text="a cat")
        spain = _search(client, text="a cat", filters={"photo_location_country": "Spain"})
        scored = _search(client, text="a cat", min_score=0.0)
        collapsed = _search(client, text="a cat", collapse=0.99)
    assert [a["cached"] for a in (plain, spain, scored, collapsed)] == [False] * 4
    assert len(fakes.store.queries) == 4
    assert set(_ids(spain)) == {"red", "cat"}
    assert all(r["score"] >= 0.0 for r in scored["results"])


def test_no_version_means_no_reuse(fakes):
    fakes.store.data_version = lambda: None  # a cluster: parts on every shard, no version read
    with _client(fakes) as client:
        answers = [_search(client, text="a boat") for _ in range(3)]
    assert [a["cached"] for a in answers] == [False] * 3
    assert len(fakes.store.queries) == 3


def test_the_cache_keeps_its_bound_and_size_zero_turns_it_off(fakes):
    cache = ResultCache(2)
    with _client(fakes, cache) as client:
        for text in ("one", "two", "three", "three", "two", "one"):
            _search(client, text=text)
    # "one" was the least recently used when "three" came in: asked again at the end.
    assert len(fakes.store.queries) == 4 and len(cache) == 2
    off = GatewayFakes()
    with _client(off, ResultCache(0)) as client:
        answers = [_search(client, text="a cat", top_k=2, offset=1) for _ in range(2)]
    assert len(off.store.queries) == 2 and not any(a["cached"] for a in answers)
    assert off.store.options["offset"] == 1  # off: the store pages itself


def test_a_store_outage_after_a_kept_answer_is_still_a_503(fakes):
    with _client(fakes) as client:
        _search(client, text="a red car")
        fakes.store.down = True
        response = client.post("/v1/search", json={"text": "a red car"})
    assert response.status_code == 503 and "cannot be reached" in response.json()["error"]["message"]


def test_metrics_count_hits_and_misses_of_both_caches(fakes):
    with _client(fakes) as client:
        for _ in range(3):
            _search(client, text="a red car")
        _search(client, text="a red car", filters={"photo_location_country": "France"})
        metrics = client.get("/metrics").text
    counts = dict(re.findall(r'^api_cache_lookups_total\{(cache="\w+",outcome="\w+")\} (\S+)$', metrics, re.M))
    assert counts == {'cache="text_vectors",outcome="hit"': "3.0", 'cache="text_vectors",outcome="miss"': "1.0",
                      'cache="results",outcome="hit"': "2.0", 'cache="results",outcome="miss"': "2.0"}


def test_the_key_holds_what_decides_the_answer():
    vector = np.ones(4, np.float32)
    base = answer_key(vector)
    assert answer_key(vector.copy()) == base
    assert answer_key(vector * 2) != base
    assert answer_key(vector, filters={"a": 1, "b": 2}) == answer_key(vector, filters={"b": 2, "a": 1})
    assert answer_key(vector, filters={"a": 1}) != base
    assert answer_key(vector, stored_terms=[("p1", -1.0)]) != answer_key(vector, stored_terms=[("p1", 1.0)])


def test_kept_rows_come_back_equal_as_copies_and_only_for_their_version():
    cache = ResultCache(4, depth=3)
    rows = [{"photo_id": "a", "score": 0.9, "rank": 1}, {"photo_id": "b", "score": 0.8, "rank": 2, "extra": 1}]
    cache.put(("k",), (1,), rows, asked=3)
    assert cache.get(("k",), (1,), 0, 2) == rows
    later = cache.get(("k",), (1,), 1, 5)  # fewer than asked: the answer is complete, any page is a slice
    assert later == rows[1:]
    later[0]["photo_id"] = "changed"
    assert cache.get(("k",), (1,), 1, 2)[0]["photo_id"] == "b"
    assert cache.get(("k",), (2,), 0, 1) is None and cache.get(("k",), None, 0, 1) is None
    cache.put(("deep",), (1,), rows, asked=2)  # as many as asked: more may exist
    assert cache.get(("deep",), (1,), 0, 3) is None
