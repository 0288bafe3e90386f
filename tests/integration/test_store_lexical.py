"""Word search in the real embedded store (services/photostore/lexical.py): a file's name, keywords,
-exclusions and phrases find what a person expects; BM25 orders as computed by hand; filters apply; a
table made before `search_text` existed gains it and its index; the index is used; typed text is data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.library import file_url
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from services.photostore.lexical import (
    exclusion_sql,
    explain_lexical,
    lexical_search,
    lexical_status,
    parse_query,
    split_words,
)

DIM = 8
MODEL = "test/lexical"


def vectors(count: int, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


PHOTOS = [
    PhotoRecord(photo_id="f4020", photo_image_url=file_url("/home/ana/Pictures/Lisbon 2023/IMG_4020.jpg")),
    PhotoRecord(photo_id="f4021", photo_image_url=file_url("/home/ana/Pictures/Lisbon 2023/IMG_4021.jpg")),
    PhotoRecord(photo_id="f4022", photo_image_url=file_url("/home/ana/Pictures/Lisbon 2023/IMG_4022.jpg")),
    PhotoRecord(photo_id="u1", photo_image_url="https://images.example/u1.jpg",
                photo_description="An old harbour at dawn", photo_keywords="lighthouse,boat,sea",
                photo_location_country="Portugal"),
    PhotoRecord(photo_id="u2", photo_image_url="https://images.example/u2.jpg",
                photo_description="The harbour is old and quiet", photo_keywords="boat",
                photo_location_country="Spain"),
    PhotoRecord(photo_id="u3", photo_image_url="https://images.example/u3.jpg",
                photo_description="Lighthouse on a cliff", photo_keywords="lighthouse,cliff",
                photographer_username="marta_s", photo_location_country="Spain"),
    PhotoRecord(photo_id="u4", photo_image_url="https://images.example/u4.jpg",
                photo_description="It's a \"quoted\" \\ backslash '; DROP TABLE lexical; --",
                photo_location_country="Peru"),
]


@pytest.fixture(scope="module")
def store(store_url):
    with PhotoStore(store_url, table="lexical") as client:
        client.ensure_table(DIM, MODEL)
        client.insert_photos(PHOTOS, vectors(len(PHOTOS)))
        yield client


def ids(results: list[dict]) -> list[str]:
    return [r["photo_id"] for r in results]


def search(store: PhotoStore, text: str, **options) -> list[dict]:
    return lexical_search(store, parse_query(text), top_k=options.pop("top_k", 20), **options)


def test_a_file_name_finds_that_file_first(store):
    results = search(store, "IMG_4021")
    assert results[0]["photo_id"] == "f4021"
    assert results[0]["matched"] == ["img", "4021"]
    assert set(ids(results)) == {"f4020", "f4021", "f4022"}  # the others share "img" only
    assert [r["rank"] for r in results] == [1, 2, 3]
    # The folder's words are searchable too.
    assert set(ids(search(store, "lisbon 2023"))) == {"f4020", "f4021", "f4022"}


def test_a_keyword_finds_the_photos_tagged_with_it_and_no_others(store):
    assert set(ids(search(store, "lighthouse"))) == {"u1", "u3"}
    assert set(ids(search(store, "Cliff"))) == {"u3"}
    assert ids(search(store, "marta")) == ["u3"]  # the photographer's name


def test_minus_removes_the_photos_with_that_word_and_the_vector_search_does_too(store):
    assert ids(search(store, "lighthouse -cliff")) == ["u1"]
    assert ids(search(store, 'boat -"old harbour"')) == ["u2"]
    where = exclusion_sql(parse_query("-lighthouse -img"))
    found = ids(store.search(vectors(1, seed=9)[0], top_k=20, where=where))
    assert sorted(found) == ["u2", "u4"]


def test_a_phrase_matches_only_adjacent_words_in_order(store):
    assert ids(search(store, '"old harbour"')) == ["u1"]  # u2 has "harbour is old"
    assert ids(search(store, '"harbour old"')) == []
    assert set(ids(search(store, "old harbour"))) == {"u1", "u2"}


def test_filters_and_the_left_out_photo_apply(store):
    assert ids(search(store, "lighthouse boat", filters={"photo_location_country": "Spain"})) == ["u3", "u2"]
    assert "u3" not in ids(search(store, "lighthouse", exclude_photo_id="u3"))


def test_a_vector_gives_each_row_its_cosine_similarity(store):
    query_vector = vectors(1, seed=5)[0]
    stored = dict(zip([p.photo_id for p in PHOTOS], vectors(len(PHOTOS))))
    for row in search(store, "lighthouse boat", vector=query_vector):
        assert row["score"] == pytest.approx(float(stored[row["photo_id"]] @ query_vector), abs=1e-5)
    assert all(row["score"] is None for row in search(store, "lighthouse"))


def test_pages_count_ranks_from_the_first_page(store):
    first = search(store, "img lisbon", top_k=2)
    second = search(store, "img lisbon", top_k=2, offset=2)
    assert [r["rank"] for r in second] == [3]
    assert ids(first) + ids(second) == ids(search(store, "img lisbon"))


def test_quotes_backslashes_and_sql_are_data(store):
    for text in ("'; DROP TABLE lexical; --", 'quoted"', "backslash \\", '"it\'s a"'):
        assert ids(search(store, text)) == ["u4"], text
    assert store.count() == len(PHOTOS)  # the table is still there, whole


def test_the_text_index_is_used(store):
    assert lexical_status(store) == {"index": "text", "note": None}
    plan = explain_lexical(store, parse_query("lighthouse"))
    assert "search_text_index" in plan


def test_a_photo_written_twice_is_found_once(store):
    store.insert_photos([PHOTOS[3]], vectors(1))
    assert ids(search(store, "dawn")) == ["u1"]


def test_bm25_order_and_scores_equal_a_hand_computation(store_url):
    texts = {"a": "red boat red harbour", "b": "red car", "c": "blue boat on a long quiet river bank",
             "d": "green field"}
    with PhotoStore(store_url, table="bm25") as small:
        small.ensure_table(DIM, MODEL)
        small.insert_photos([PhotoRecord(photo_id=k, photo_image_url=f"https://x.example/{k}.jpg",
                                         photo_description=v) for k, v in texts.items()], vectors(4))
        results = search(small, "red boat")
    docs = {k: split_words(v) for k, v in texts.items()}
    avgdl = sum(len(d) for d in docs.values()) / len(docs)

    def bm25(doc: list[str]) -> float:
        total = 0.0
        for term in ("red", "boat"):
            df = sum(term in d for d in docs.values())
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            tf = doc.count(term)
            total += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avgdl))
        return total

    expected = sorted(((bm25(d), k) for k, d in docs.items() if bm25(d) > 0), key=lambda x: (-x[0], x[1]))
    assert ids(results) == [k for _, k in expected] == ["a", "b", "c"]
    assert [r["lexical_score"] for r in results] == pytest.approx([s for s, _ in expected], rel=1e-6)


def test_an_old_table_gains_the_column_and_its_index_and_old_rows_become_searchable(store_url):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("services.photostore.migrations.add_search_text", lambda *args: None)
        with PhotoStore(store_url, table="before_words") as old:
            old.ensure_table(DIM, MODEL)
            old.insert_photos([PhotoRecord(photo_id="old1", photo_image_url="https://x.example/1.jpg",
                                           photo_description="A windmill by the canal")], vectors(1))
            columns = old.connection.read_rows("columns", "SELECT name FROM system.columns WHERE table = 'before_words'")
            assert "search_text" not in {c[0] for c in columns}
    with PhotoStore(store_url, table="before_words") as upgraded:
        upgraded.table_info()  # what the gateway does when it first reads the table
        assert ids(search(upgraded, "windmill")) == ["old1"]
        assert lexical_status(upgraded)["index"] == "text"
        assert "search_text_index" in explain_lexical(upgraded, parse_query("canal"))


def test_no_table_and_nothing_to_search_give_no_results(store_url, store):
    with PhotoStore(store_url, table="never_made") as empty:
        assert search(empty, "anything") == []
        assert lexical_status(empty)["index"] == "none"
    assert search(store, "the of -lighthouse") == []
