"""Unit tests of weighted `terms` in POST /v1/search (gateway with fake adapters): the query vector is the
normalised weighted sum of the terms' unit vectors; texts and images go to the embedder in one call each;
a stored photo's vector is added by the store; mistakes are 422 sentences."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from services.common.vectors import normalize
from tests.unit.api_support import error_of, image_vector, text_vector


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_terms_are_a_weighted_sum_of_unit_vectors_with_one_embedder_call_per_kind(client, fakes):
    fakes.urls["http://img.test/q.jpg"] = b"green"
    terms = [{"text": "a beach", "weight": 1.5}, {"text": "people", "weight": -0.5},
             {"image_base64": _b64(b"red"), "weight": 1}, {"image_url": "http://img.test/q.jpg", "weight": 0.5}]
    response = client.post("/v1/search", json={"terms": terms, "top_k": 3})
    assert response.status_code == 200, response.text
    expected = normalize(1.5 * text_vector("a beach") - 0.5 * text_vector("people")
                         + image_vector(b"red") + 0.5 * image_vector(b"green"))
    np.testing.assert_allclose(fakes.store.queries[-1], expected, atol=1e-5)
    assert sorted(fakes.embedder.calls) == [("images", 2), ("texts", 2)]


def test_a_negative_term_pushes_its_photo_down(client, fakes):
    plain = client.post("/v1/search", json={"terms": [{"image_base64": _b64(b"red")}], "top_k": 5}).json()
    minus = client.post("/v1/search", json={"terms": [{"image_base64": _b64(b"red")},
                                                      {"photo_id": "cat", "weight": -1}], "top_k": 5}).json()
    plain_scores = {r["photo_id"]: r["score"] for r in plain["results"]}
    assert plain["results"][0]["photo_id"] == "red"
    assert minus["results"][-1]["photo_id"] == "cat" and minus["results"][-1]["score"] < plain_scores["cat"] - 0.5


def test_a_photo_id_term_is_summed_by_the_store_not_fetched(client, fakes):
    fakes.store.get_photo = None  # the gateway must not ask for the stored vector
    body = client.post("/v1/search", json={"terms": [{"photo_id": "dog", "weight": 2},
                                                     {"text": "a dog", "weight": 1}]}).json()
    assert fakes.store.stored_terms == [("dog", 2.0)]
    np.testing.assert_allclose(fakes.store.queries[-1],
                               normalize(2 * image_vector(b"dog") + text_vector("a dog")), atol=1e-5)
    assert body["results"][0]["photo_id"] == "dog"


def test_the_old_fields_are_one_more_term_of_weight_one(client, fakes):
    client.post("/v1/search", json={"text": "sky", "terms": [{"text": "clouds", "weight": -1}]})
    np.testing.assert_allclose(fakes.store.queries[-1],
                               normalize(text_vector("sky") - text_vector("clouds")), atol=1e-5)


def test_multipart_terms_name_their_image_files(client, fakes):
    terms = [{"image": "image_1", "weight": 1}, {"image": "image_2", "weight": -0.5}]
    response = client.post("/v1/search", data={"terms": json.dumps(terms)},
                           files={"image_1": ("a.jpg", b"blue", "image/jpeg"), "image_2": ("b.jpg", b"cat", "image/jpeg")})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(fakes.store.queries[-1],
                               normalize(image_vector(b"blue") - 0.5 * image_vector(b"cat")), atol=1e-5)


@pytest.mark.parametrize("terms, sentence", [
    ([{"text": "a", "weight": 1}, {"text": "a", "weight": -1}], "cancel each other out"),
    ([{"photo_id": "red", "weight": 1}, {"photo_id": "red", "weight": -1}], "cancel each other out"),
    ([{"text": "a", "photo_id": "red"}], "terms.0: each term needs exactly one of"),
    ([{"weight": 1}], "terms.0: each term needs exactly one of"),
    ([{"text": "a", "weight": 2.5}], "terms.0.weight: a term's weight must be between -2 and 2"),
    ([{"text": str(i)} for i in range(9)], "terms"),
    ([{"image": "image_1"}], "no file field 'image_1'"),
])
def test_bad_terms_are_422_sentences(client, terms, sentence):
    response = client.post("/v1/search", json={"terms": terms})
    assert response.status_code == 422
    assert sentence in error_of(response)["message"]


def test_a_missing_photo_term_is_404(client):
    response = client.post("/v1/search", json={"terms": [{"photo_id": "nope"}]})
    assert response.status_code == 404 and "nope" in error_of(response)["message"]
