"""Unit tests of the query modes (services/api/hybrid.py): the fusions against hand computations, and
lexical and hybrid queries through the gateway with fake adapters (the fake store's word search counts
the query's words in a description; the real one is tested on the real store in tests/integration).
"""
from __future__ import annotations

import pytest

from services.api import hybrid
from tests.unit.api_support import GatewayFakes, error_of, gateway_client, text_vector


@pytest.fixture
def fakes() -> GatewayFakes:
    fakes = GatewayFakes()
    # Words for the word search: red, green, blue, cat and dog are "a <name> photo".
    fakes.store.add("red-cat", fakes.store.photos["red"][1], photo_description="a red cat on a mat")
    return fakes


@pytest.fixture
def client(fakes):
    with gateway_client(fakes) as client:
        yield client


def rows(*photo_ids: str, key: str = "score", scores=None) -> list[dict]:
    scores = scores or [1.0 - 0.1 * n for n in range(len(photo_ids))]
    return [{"photo_id": p, key: s, "score": 0.5} if key != "score" else {"photo_id": p, "score": s}
            for p, s in zip(photo_ids, scores)]


# -- the fusions, by hand ------------------------------------------------------------------------

def test_rrf_order_equals_a_hand_computation():
    vector = rows("a", "b", "c")
    lexical = rows("c", "d", "a", key="lexical_score", scores=[3.0, 2.0, 1.0])
    fused = hybrid.fuse_rrf(vector, lexical, k=60)
    # a: 1/61 + 1/63; c: 1/63 + 1/61 (a tie: the better vector rank first); b: 1/62; d: 1/62 (b has a vector rank).
    expected = {"a": 1 / 61 + 1 / 63, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 62}
    assert [r["photo_id"] for r in fused] == ["a", "c", "b", "d"]
    assert [r["rank"] for r in fused] == [1, 2, 3, 4]
    for result in fused:
        assert result["match"]["fused_score"] == pytest.approx(expected[result["photo_id"]])
    assert fused[1]["match"] == {"vector_rank": 3, "vector_score": pytest.approx(0.8), "lexical_rank": 1,
                                 "lexical_score": 3.0, "fused_score": pytest.approx(expected["c"]), "words": []}
    assert fused[3]["match"]["vector_rank"] is None and fused[3]["match"]["vector_score"] is None
    assert fused[2]["match"]["lexical_rank"] is None


def test_rrf_k_changes_the_weight_of_the_top_ranks():
    vector = rows("a", "b", "c", "d")
    lexical = rows("d", "x", key="lexical_score", scores=[2.0, 1.0])
    # k=1: d = 1/(1+4) + 1/(1+1) beats a = 1/(1+1), the first of one list only.
    assert [r["photo_id"] for r in hybrid.fuse_rrf(vector, lexical, k=1)][:2] == ["d", "a"]
    assert hybrid.fuse_rrf(vector, lexical, k=1)[0]["match"]["fused_score"] == pytest.approx(1 / 5 + 1 / 2)


def test_alpha_fusion_normalises_each_list_and_counts_absence_as_zero():
    vector = rows("a", "b", "c", scores=[0.9, 0.5, 0.1])  # normalised: 1, 0.5, 0
    lexical = rows("c", "d", "a", key="lexical_score", scores=[3.0, 2.0, 1.0])  # normalised: 1, 0.5, 0
    mostly_vector = hybrid.fuse_alpha(vector, lexical, alpha=0.7)
    # a .7*1 + .3*0 = .7; b .7*.5 = .35; c .7*0 + .3*1 = .3; d .3*.5 = .15
    assert [r["photo_id"] for r in mostly_vector] == ["a", "b", "c", "d"]
    assert [r["match"]["fused_score"] for r in mostly_vector] == pytest.approx([0.7, 0.35, 0.3, 0.15])
    mostly_words = hybrid.fuse_alpha(vector, lexical, alpha=0.2)
    # a .2; b .1; c .8; d .4
    assert [r["photo_id"] for r in mostly_words] == ["c", "d", "a", "b"]
    # A lexical-only photo keeps the cosine the word search gave it as its score.
    assert mostly_words[1]["score"] == 0.5 and mostly_words[1]["match"]["vector_score"] is None


def test_alpha_of_a_list_of_equal_scores_is_one_for_each():
    fused = hybrid.fuse_alpha(rows("a", "b", scores=[0.4, 0.4]), [], alpha=1.0)
    assert [r["match"]["fused_score"] for r in fused] == [1.0, 1.0]
    assert [r["photo_id"] for r in fused] == ["a", "b"]  # ties: the vector order


# -- through the gateway -------------------------------------------------------------------------

def search(client, **fields) -> dict:
    response = client.post("/v1/search", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def test_lexical_mode_ranks_by_words_and_keeps_the_cosine_score(client, fakes):
    body = search(client, text="red cat", mode="lexical", top_k=5)
    assert body["mode"] == "lexical" and body["query_truncated"] is False
    ids = [r["photo_id"] for r in body["results"]]
    assert ids[0] == "red-cat" and set(ids) == {"red-cat", "red", "cat"}
    first = body["results"][0]
    assert first["match"]["words"] == ["red", "cat"] and first["match"]["lexical_rank"] == 1
    assert first["match"]["vector_rank"] is None
    # The word search ran while the text was embedded; the page's cosines come from the stored vectors.
    assert first["score"] == pytest.approx(float(fakes.store.photos["red-cat"][1] @ text_vector("red cat")), abs=1e-5)
    # With a score cut-off, every matching photo's cosine decides which ones the word search keeps.
    everything = [r["score"] for r in body["results"]]
    cut = sorted(everything)[1]
    kept = search(client, text="red cat", mode="lexical", top_k=5, min_score=cut)["results"]
    assert sorted(r["score"] for r in kept) == pytest.approx(sorted(s for s in everything if s >= cut))


def test_hybrid_pages_are_slices_of_the_fused_list(client):
    everything = search(client, text="red cat photo", mode="hybrid", top_k=6)["results"]
    pages = search(client, text="red cat photo", mode="hybrid", top_k=2)["results"] + \
        search(client, text="red cat photo", mode="hybrid", top_k=2, offset=2)["results"] + \
        search(client, text="red cat photo", mode="hybrid", top_k=2, offset=4)["results"]
    assert [r["photo_id"] for r in pages] == [r["photo_id"] for r in everything]
    assert [r["rank"] for r in pages] == [1, 2, 3, 4, 5, 6]
    fused = [r["match"]["fused_score"] for r in everything]
    assert fused == sorted(fused, reverse=True)


def test_hybrid_with_alpha_one_is_the_vector_order(client):
    vector = search(client, text="red cat photo", mode="vector", top_k=6)["results"]
    alpha = search(client, text="red cat photo", mode="hybrid", fusion="alpha", alpha=1.0, top_k=6)["results"]
    assert [r["photo_id"] for r in alpha] == [r["photo_id"] for r in vector]
    assert vector[0]["match"] is None


def test_stop_words_only_run_as_vector_with_a_notice(client, fakes):
    for text in ("the of a", "?!? ..."):
        body = search(client, text=text, mode="hybrid", top_k=3)
        assert body["mode"] == "vector" and len(body["results"]) == 3
        assert any("no words to match" in notice for notice in body["notices"])
        assert "no words to match" in body["notice"]
    body = search(client, photo_id="red", mode="lexical", top_k=2)
    assert body["mode"] == "vector" and "no text" in body["notices"][0]


def test_a_long_text_is_accepted_cut_and_flagged(client, fakes):
    text = ("red cat " * 1250)[:10_000]
    body = search(client, text=text, mode="hybrid", top_k=3)
    assert body["query_truncated"] is True and body["mode"] == "hybrid"
    assert any("1,000 characters" in n for n in body["notices"]) and any("2,000 characters" in n for n in body["notices"])
    assert max(len(t) for t in fakes.embedder.texts[-1]) == 2000
    # Vector mode: cut for the embedder only.
    body = search(client, text="blue " * 500, mode="vector", top_k=1)
    assert body["query_truncated"] is True and len(body["notices"]) == 2  # the cut, and the random weights
    assert search(client, text="blue", top_k=1)["query_truncated"] is False
    too_long = client.post("/v1/search", json={"text": "x" * 10_001, "mode": "lexical"})
    assert too_long.status_code == 422 and "text" in error_of(too_long)["message"]


def test_excluded_words_leave_the_text_the_embedder_sees(client, fakes):
    search(client, text="red -cat", mode="hybrid", top_k=3)
    assert fakes.embedder.texts[-1] == ["red"]


def test_the_default_mode_is_the_gateways_setting(fakes):
    with gateway_client(fakes, search_mode="lexical") as client:
        assert search(client, text="green")["mode"] == "lexical"
        assert search(client, text="green", mode="vector")["mode"] == "vector"


@pytest.mark.parametrize(("fields", "sentence"), [
    ({"mode": "words"}, "mode: Input should be 'vector', 'lexical' or 'hybrid'"),
    ({"fusion": "max"}, "fusion: Input should be 'rrf' or 'alpha'"),
    ({"alpha": 1.5}, "alpha must be between 0 and 1"),
    ({"min_relevance": -0.1}, "min_relevance must be between 0 and 1"),
    ({"rrf_k": 0}, "rrf_k must be between 1 and 1000"),
])
def test_bad_mode_fusion_alpha_and_min_relevance_are_refused_with_a_sentence(client, fields, sentence):
    response = client.post("/v1/search", json={"text": "red", **fields})
    assert response.status_code == 422
    assert sentence in error_of(response)["message"]


def test_excluded_words_reach_the_vector_search_as_conditions(client, fakes):
    seen = {}
    search_vectors = fakes.store.search

    def recording(vector, top_k=10, min_score=None, **options):
        seen.update(options)
        return search_vectors(vector, top_k, min_score, **{k: v for k, v in options.items() if k != "where"})

    fakes.store.search = recording
    body = search(client, text="red -cat", mode="hybrid", top_k=6)
    conditions, params = seen["where"]
    assert params == {"lx_not": ["cat"]} and len(conditions) == 1
    # The word search left the cat photos out itself; the fake vector search ignores the conditions.
    assert all("cat" not in r["match"]["words"] for r in body["results"])


def test_hybrid_answers_are_kept_under_their_words_mode_and_fusion(client, fakes):
    first = search(client, text="red cat photo", mode="hybrid", top_k=2)
    assert first["cached"] is False
    again = search(client, text="red cat photo", mode="hybrid", top_k=2, offset=2)
    assert again["cached"] is True and [r["rank"] for r in again["results"]] == [3, 4]
    # Another fusion, mode or word list is another answer; a write to the table makes every one stale.
    assert search(client, text="red cat photo", mode="hybrid", fusion="alpha", top_k=2)["cached"] is False
    assert search(client, text="red cat photo", mode="lexical", top_k=2)["cached"] is False
    assert search(client, text="red cat photo", mode="vector", top_k=2)["cached"] is False
    fakes.store.add("cat-2", fakes.store.photos["cat"][1], photo_description="a red cat photo")
    fresh = search(client, text="red cat photo", mode="hybrid", top_k=6)
    assert fresh["cached"] is False and "cat-2" in [r["photo_id"] for r in fresh["results"]]
