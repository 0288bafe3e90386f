"""Unit tests of POST /v1/search on the gateway with fake adapters: what a query is accepted as, what is
refused and with which sentence.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from services.api.query import NOTHING_TO_SEARCH
from services.common.embedder_client import EmbedderTimeout
from services.common.errors import DependencyTimeout, DependencyUnavailable
from services.common.vectors import combine
from tests.unit.api_support import DIM, error_of, gateway_client, image_vector, make_settings, text_vector

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
    # The default weight 0.5 is the mean of the two unit vectors, normalised again.
    # The same query as the first: asked with no-cache, so that the store sees its vector again.
    client.post("/v1/search", json={"text": "a dog", "image_base64": base64.b64encode(b"cat").decode()},
                headers={"Cache-Control": "no-cache"})
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
    with gateway_client(fakes) as client:
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


def _images(count: int, size: int) -> dict[str, tuple[str, bytes, str]]:
    return {f"image_{i}": (f"{i}.jpg", bytes([i]) * size, "image/jpeg") for i in range(1, count + 1)}


def _terms(count: int) -> str:
    return json.dumps([{"image": f"image_{i}", "weight": 1} for i in range(1, count + 1)])


def test_the_image_limit_is_per_image_with_a_total_cap(fakes):
    # Three images of 190 KB, each under the 200 KB per image: together past one image's allowance.
    with gateway_client(fakes, max_image_bytes=200_000, max_query_bytes=600_000) as client:
        response = client.post("/v1/search", files=_images(3, 190_000), data={"terms": _terms(3)})
        assert response.status_code == 200, response.text
        encoded = [{"image_base64": base64.b64encode(bytes([i]) * 190_000).decode(), "weight": 1} for i in (1, 2, 3)]
        assert client.post("/v1/search", json={"terms": encoded}).status_code == 200
        one_too_big = client.post("/v1/search", files=_images(1, 200_001), data={"terms": _terms(1)})
        assert one_too_big.status_code == 413 and "200,000 bytes" in error_of(one_too_big)["message"]
    # Unset, the cap is twice one image: two of the largest images, not three.
    with gateway_client(fakes, max_image_bytes=200_000) as client:
        assert client.post("/v1/search", files=_images(2, 200_000), data={"terms": _terms(2)}).status_code == 200
        for response in (client.post("/v1/search", files=_images(3, 190_000), data={"terms": _terms(3)}),
                         client.post("/v1/search", json={"terms": encoded})):
            assert response.status_code == 413, response.text
            message = error_of(response)["message"]
            assert "400,000 bytes" in message and "images of one query" in message


def test_the_total_cap_may_not_be_under_one_image():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="API_MAX_QUERY_BYTES"):
        make_settings(max_image_bytes=200_000, max_query_bytes=100_000)


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


def test_embedder_down_or_hung_is_503_with_retry_after(client, fakes):
    fakes.embedder.failure = DependencyUnavailable("The embedder at http://e.test cannot be reached.")
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "cannot be reached" in error_of(response)["message"]
    # A hung embedder is as unavailable to the caller as a dead one: try again shortly, not "gateway timeout".
    # The error is the one the real client raises (tests/integration/test_embedder_client.py).
    fakes.embedder.failure = EmbedderTimeout("The embedder at http://e.test did not answer within 30 seconds.")
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert error_of(response)["code"] == "embedder_timeout" and "30 seconds" in error_of(response)["message"]
    # Still a timeout to the workers, which retry it with backoff (services/worker/tasks.py, TRANSIENT).
    assert isinstance(fakes.embedder.failure, DependencyTimeout)


def test_store_down_is_503(client, fakes):
    fakes.store.down = True
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 503 and "store" in error_of(response)["message"]


def test_table_of_another_model_is_refused(client, fakes):
    fakes.store.table_info = lambda: {"model": "other-clip", "dim": DIM}
    response = client.post("/v1/search", json={"text": "x"})
    assert response.status_code == 409 and "other-clip" in error_of(response)["message"]


def test_a_chunked_body_over_the_limit_is_413(client):
    # No Content-Length to check up front: the gateway must stop reading, not buffer it all.
    chunks = (b" " * 65536 for _ in range(8))
    response = client.post("/v1/search", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
