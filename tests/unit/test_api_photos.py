"""Unit tests of the gateway's reading routes with fake adapters: one photo, a random photo (within filters),
field values (facets) and the collection's stats.
"""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from services.common.errors import DependencyUnavailable
from tests.fakes import MULTILINGUAL_TEXT_TOWER
from tests.unit.api_support import DIM, error_of, make_settings

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


def test_stats_pass_on_the_text_towers_fields(client, fakes):
    fakes.embedder.info_extra = MULTILINGUAL_TEXT_TOWER | {"pixel_input": {"shortest_edge": 224}}
    model = client.get("/v1/stats").json()["model"]
    assert {name: model[name] for name in MULTILINGUAL_TEXT_TOWER} == MULTILINGUAL_TEXT_TOWER
    assert model["name"] == "fake-clip" and model["fingerprint"] == "f00d"
    # A field the gateway's schema does not name yet still reaches the caller.
    assert model["pixel_input"] == {"shortest_edge": 224}


def test_stats_of_an_older_embedder_leave_the_text_towers_fields_null(client):
    model = client.get("/v1/stats").json()["model"]
    assert model["name"] == "fake-clip" and model["dim"] == DIM
    assert [model[name] for name in MULTILINGUAL_TEXT_TOWER] == [None] * len(MULTILINGUAL_TEXT_TOWER)


def test_stats_while_the_embedder_is_down(client, fakes):
    fakes.embedder.failure = DependencyUnavailable("down")
    stats = client.get("/v1/stats").json()
    assert stats["photos"] == 5 and stats["model"] is None and stats["random_weights"] is False


def test_facets_list_the_most_common_values_first(client):
    body = client.get("/v1/facets/photo_location_country").json()
    assert body == {"field": "photo_location_country",
                    "values": [{"value": "France", "photos": 3}, {"value": "Spain", "photos": 2}]}
    one = client.get("/v1/facets/photo_location_country", params={"limit": 1}).json()
    assert one["values"] == [{"value": "France", "photos": 3}]


def test_every_route_shares_one_cache_of_the_table(fakes):
    asked = []
    table_info = fakes.store.table_info
    fakes.store.table_info = lambda: asked.append(1) or table_info()
    services = fakes.services()
    services.table_info._ttl_s = 60.0
    with TestClient(create_app(make_settings(), services=services)) as client:
        assert client.get("/v1/photos/cat").status_code == 200
        assert client.get("/v1/photos/random").status_code == 200
        assert client.post("/v1/search", json={"text": "x"}).status_code == 200
        assert len(asked) == 1
        # The stats ask afresh, and refresh the same cache.
        assert client.get("/v1/stats").json()["table"] == {"model": "fake-clip", "dim": DIM}
        assert len(asked) == 2


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
