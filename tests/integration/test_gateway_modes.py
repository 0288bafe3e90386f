"""Query modes and calibrated relevance through the real gateway, the real embedder (tiny random CLIP)
and the real embedded store, each its own process.

The library: 3,000 photos with random vectors and descriptions of three words from a vocabulary, five
"zebra" photos whose vectors are the text vector of "sunset" (so the vector search ranks them first
for it), and one photo read from a folder, IMG_4021.jpg, whose file name only the word search sees.
"""
from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from services.common.api_client import ApiClient, ApiError
from services.common.embedder_client import EmbedderClient
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from tests.support import store_embedder_gateway

TABLE = "photos_hybrid"
COUNT = 3000
VOCABULARY = ["beach", "mountain", "city", "dog", "sunset", "forest", "boat", "market", "snow", "bridge",
              "flower", "desert", "train", "window", "coffee", "river", "night", "child", "garden", "street"]
ZEBRAS = [f"zebra-{i}" for i in range(5)]
FILE_PHOTO = "file-photo"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("hybrid")
    env = {**os.environ, "STORE_TABLE": TABLE,
           "EMBEDDER_MODEL": str(tiny_model_dir), "EMBEDDER_DEVICE": "cpu", "EMBEDDER_TORCH_THREADS": "1",
           "API_TEXT_CACHE_REDIS": "false", "API_SEARCH_MODE": "vector",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with store_embedder_gateway(workdir, env) as urls:
        _fill(urls["store"], urls["embedder"])
        yield urls


def _fill(store_url: str, embedder_url: str) -> None:
    with EmbedderClient(embedder_url) as embedder:
        info = embedder.model_info()
        sunset = np.asarray(embedder.embed_texts(["sunset"])[0], np.float32)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(COUNT, int(info["dim"]))).astype(np.float32)
    records = [PhotoRecord(photo_id=f"photo-{i:04d}", photo_image_url=f"http://images.test/{i}.jpg",
                           photo_description=" ".join(rng.choice(VOCABULARY, 3, replace=False)))
               for i in range(COUNT)]
    for number, photo_id in enumerate(ZEBRAS):
        records.append(PhotoRecord(photo_id=photo_id, photo_image_url=f"http://images.test/{photo_id}.jpg",
                                   photo_description=f"a zebra at the river {number}"))
    records.append(PhotoRecord(photo_id=FILE_PHOTO, photo_image_url="file:///photos/2024/IMG_4021.jpg",
                               photo_description="sunset over the city"))
    extra = [sunset + 0.01 * rng.normal(size=sunset.size).astype(np.float32) for _ in ZEBRAS]
    vectors = np.vstack([vectors, *extra, rng.normal(size=(1, sunset.size)).astype(np.float32)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with PhotoStore(store_url, TABLE) as store:
        store.ensure_table(int(info["dim"]), str(info["name"]))
        store.insert_photos(records, vectors)


@pytest.fixture
def api(stack):
    with ApiClient(stack["api"], timeout=60) as client:
        yield client


def post(stack, **fields) -> dict:
    response = httpx.post(f"{stack['api']}/v1/search", json=fields, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: dict) -> list[str]:
    return [result["photo_id"] for result in body["results"]]


def test_lexical_mode_finds_a_file_name_first(stack):
    body = post(stack, text="IMG_4021", mode="lexical", top_k=5)
    assert body["mode"] == "lexical"
    assert ids(body) == [FILE_PHOTO]
    assert body["results"][0]["match"]["words"] == ["img", "4021"]
    assert -1 <= body["results"][0]["score"] <= 1  # the cosine to the query vector, as ever


def test_lexical_mode_finds_a_keywords_photos(stack):
    body = post(stack, text="zebra", mode="lexical", top_k=20)
    assert sorted(ids(body)) == ZEBRAS
    assert all(result["match"]["words"] == ["zebra"] for result in body["results"])
    scores = [result["match"]["lexical_score"] for result in body["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_an_excluded_word_removes_its_photos_from_hybrid(stack):
    # The zebras' vectors are the text "sunset"'s: the vector search puts them first.
    assert set(ids(post(stack, text="sunset", mode="vector", top_k=5))) == set(ZEBRAS)
    assert set(ZEBRAS) <= set(ids(post(stack, text="sunset", mode="hybrid", top_k=20)))
    excluded = post(stack, text="sunset -zebra", mode="hybrid", top_k=50)
    assert excluded["mode"] == "hybrid" and len(excluded["results"]) == 50
    assert not set(ZEBRAS) & set(ids(excluded))
    assert all("zebra" not in (r["photo_description"] or "") for r in excluded["results"])


def test_hybrid_rrf_order_is_the_fusion_of_the_two_modes_own_answers(stack):
    text = "beach dog"
    vector = ids(post(stack, text=text, mode="vector", top_k=50))
    words = ids(post(stack, text=text, mode="lexical", top_k=50))
    fused: dict[str, float] = {}
    for ranking in (vector, words):
        for rank, photo_id in enumerate(ranking, start=1):
            fused[photo_id] = fused.get(photo_id, 0.0) + 1.0 / (60 + rank)
    far = len(vector) + len(words) + 1
    expected = sorted(fused, key=lambda p: (-fused[p], vector.index(p) if p in vector else far,
                                            words.index(p) if p in words else far, p))
    first = post(stack, text=text, mode="hybrid", top_k=20)
    second = post(stack, text=text, mode="hybrid", top_k=20, offset=20)
    assert ids(first) + ids(second) == expected[:40]
    assert [r["rank"] for r in second["results"]] == list(range(21, 41))
    top = first["results"][0]["match"]
    assert top["fused_score"] == pytest.approx(fused[expected[0]])
    assert top["vector_rank"] == (vector.index(expected[0]) + 1 if expected[0] in vector else None)


def test_alpha_fusion_of_one_is_the_vector_order(stack):
    text = "forest river"
    vector = ids(post(stack, text=text, mode="vector", top_k=30))
    assert ids(post(stack, text=text, mode="hybrid", fusion="alpha", alpha=1.0, top_k=30)) == vector


def test_relevance_is_calibrated_on_the_library(stack):
    """Each of ten library photos as the query: about 1% of the library (30 photos) should be closer than
    99% of it. Relevance taken as the cosine itself, or read the wrong way round, gives 1 or 3000."""
    rng = np.random.default_rng(11)
    counts = []
    for number in rng.choice(COUNT, 10, replace=False):
        body = post(stack, photo_id=f"photo-{number:04d}", top_k=100)
        values = [r["relevance"] for r in body["results"]]
        assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
        counts.append(sum(v >= 0.99 for v in values))
        kept = post(stack, photo_id=f"photo-{number:04d}", top_k=100, min_relevance=0.99)
        assert len(kept["results"]) == counts[-1]
    assert 18 <= np.mean(counts) <= 45, counts


def test_a_stop_word_query_runs_as_vector_and_says_so(stack):
    body = post(stack, text="the of and", mode="hybrid", top_k=3)
    assert body["mode"] == "vector" and len(body["results"]) == 3
    assert any("no words to match" in notice for notice in body["notices"])
    long = post(stack, text=("river " * 2000)[:10_000], mode="hybrid", top_k=3)
    assert long["query_truncated"] is True and long["mode"] == "hybrid"


@pytest.mark.parametrize(("fields", "sentence"), [
    ({"mode": "fuzzy"}, "mode: Input should be 'vector', 'lexical' or 'hybrid'"),
    ({"alpha": 2}, "alpha must be between 0 and 1"),
    ({"min_relevance": 1.5}, "min_relevance must be between 0 and 1"),
])
def test_bad_mode_alpha_and_min_relevance_are_refused(api, fields, sentence):
    with pytest.raises(ApiError) as refused:
        api._request("POST", "/v1/search", json={"text": "river", **fields})
    assert refused.value.status == 422 and sentence in refused.value.message
