"""PhotoStore against the real embedded store server (a subprocess on a free port, a temporary data folder).

The same clickhouse-connect calls run against MyScale or ClickHouse; here they go through the embedded
store that `make up` starts by default.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import BadRequest, NotFound
from services.photostore import InvalidFilter, ModelMismatch, PhotoStore, StoreError, StoreUnavailable
from tests.integration.store_support import COUNT, COUNTRIES, DIM, MODEL, make_photo, unit_vectors
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(COUNT, seed=1)


@pytest.fixture(scope="module")
def filled(store_url, vectors):
    """A table of COUNT photos with random unit vectors."""
    photo_store = PhotoStore(store_url, table="filled")
    photo_store.ensure_table(DIM, MODEL)
    assert photo_store.insert_photos([make_photo(i) for i in range(COUNT)], vectors) == COUNT
    yield photo_store
    photo_store.close()


def test_reads_before_the_first_ingest_find_nothing(store_url):
    photo_store = PhotoStore(store_url, table="never_created")
    assert photo_store.ping() is True
    assert photo_store.table_info() is None
    assert photo_store.count() == 0
    assert photo_store.search(unit_vectors(1, 0)[0]) == []
    assert photo_store.random_photo() is None
    assert photo_store.get_photo("photo-0001") is None
    assert photo_store.existing_ids(["photo-0001"]) == set()
    photo_store.close()


def test_ensure_table_is_idempotent_and_refuses_another_model(store_url):
    photo_store = PhotoStore(store_url, table="models")
    photo_store.ensure_table(DIM, MODEL)
    photo_store.ensure_table(DIM, MODEL)
    info = photo_store.table_info()
    assert (info["model"], info["dim"]) == (MODEL, DIM)
    # Another process sees the same record.
    assert PhotoStore(store_url, table="models").table_info()["model"] == MODEL

    for dim, model in ((DIM, "another/model"), (768, MODEL)):
        with pytest.raises(ModelMismatch) as caught:
            PhotoStore(store_url, table="models").ensure_table(dim, model)
        assert caught.value.status_code == 409
        assert MODEL in caught.value.message and "make reembed MODEL=" in caught.value.message
        assert "drop" in caught.value.message and "ingest again" in caught.value.message
    # Vectors of another dimension never reach the table.
    with pytest.raises(ModelMismatch):
        photo_store.insert_photos([make_photo(1)], unit_vectors(1, 0)[:, :64])
    assert photo_store.count() == 0
    photo_store.close()


def test_a_photo_searched_by_its_own_vector_comes_first(filled, vectors):
    assert filled.count() == COUNT
    for i in (0, 123, 499):
        results = filled.search(vectors[i], top_k=5)
        assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
        assert results[0]["photo_id"] == f"photo-{i:04d}"
        assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        assert results[0]["photo_image_url"] == f"https://images.example/{i}.jpg"
        assert results[0]["photo_location_country"] == COUNTRIES[i % len(COUNTRIES)]
        assert results[0]["photo_width"] == 100 + i


def test_scores_are_cosine_similarities(filled, vectors):
    query = vectors[10]
    results = filled.search(query, top_k=20)
    expected = vectors @ query
    for result in results:
        i = int(result["photo_id"].split("-")[1])
        assert result["score"] == pytest.approx(float(expected[i]), abs=1e-4)
    assert [r["photo_id"] for r in results][:5] == [f"photo-{i:04d}" for i in np.argsort(-expected)[:5]]


def test_top_k_min_score_and_exclusion(filled, vectors):
    assert len(filled.search(vectors[3], top_k=1)) == 1
    assert len(filled.search(vectors[3], top_k=100)) == 100
    assert len(filled.search(vectors[3], top_k=1000)) == COUNT
    # Random 512-d unit vectors are nearly orthogonal: only the photo itself scores above 0.5.
    assert [r["photo_id"] for r in filled.search(vectors[3], top_k=50, min_score=0.5)] == ["photo-0003"]
    results = filled.search(vectors[3], top_k=10, min_score=0.0)
    assert results and all(r["score"] >= 0.0 for r in results)
    excluded = filled.search(vectors[3], top_k=10, exclude_photo_id="photo-0003")
    assert len(excluded) == 10 and "photo-0003" not in {r["photo_id"] for r in excluded}


def test_filters(filled, vectors):
    query = vectors[42]
    spain = filled.search(query, top_k=COUNT, filters={"photo_location_country": "Spain"})
    assert len(spain) == COUNT // 4 and {r["photo_location_country"] for r in spain} == {"Spain"}

    ranged = filled.search(query, top_k=COUNT, filters={"photo_width": {"gte": 150, "lt": 160}})
    assert sorted(r["photo_width"] for r in ranged) == list(range(150, 160))

    beaches = filled.search(query, top_k=COUNT, filters={"photo_description": {"contains": "SUNNY beach"}})
    assert len(beaches) == COUNT // 5 and all("sunny beach" in r["photo_description"] for r in beaches)

    both = filled.search(query, top_k=COUNT, filters={"photo_location_country": ["Japan", "Peru"],
                                                      "photo_submitted_at": {"gte": "2020-01-27"}})
    assert both and all(r["photo_location_country"] in ("Japan", "Peru") for r in both)
    assert all(r["photo_submitted_at"] >= "2020-01-27" for r in both)

    # A value that would break SQL built by string formatting is just text to match.
    assert filled.search(query, filters={"photo_location_country": "Spain' OR 1=1 --"}) == []
    with pytest.raises(InvalidFilter):
        filled.search(query, filters={"photo_embed": [0.0]})


def test_get_random_count_and_existing_ids(filled, vectors):
    photo = filled.get_photo("photo-0007", with_vector=True)
    assert photo["photo_image_url"] == "https://images.example/7.jpg"
    assert photo["photographer_username"] == "user0"
    assert photo["photo_aspect_ratio"] == pytest.approx(0.535)
    assert np.allclose(photo["vector"], vectors[7], atol=1e-6)
    assert "vector" not in filled.get_photo("photo-0007")
    assert filled.get_photo("no-such-photo") is None

    drawn = {filled.random_photo()["photo_id"] for _ in range(8)}
    assert len(drawn) > 1 and all(p.startswith("photo-") for p in drawn)
    within = [filled.random_photo({"photo_location_country": ["Japan", "Peru"], "photographer_username": "user0"})
              for _ in range(8)]
    assert {(p["photo_location_country"], p["photographer_username"]) for p in within} <= {("Japan", "user0"),
                                                                                          ("Peru", "user0")}
    assert len({p["photo_id"] for p in within}) > 1
    assert filled.random_photo({"photo_location_country": "Atlantis"}) is None

    assert filled.existing_ids(["photo-0001", "photo-0499", "photo-9999", "photo-0001"]) == {"photo-0001", "photo-0499"}
    assert filled.existing_ids([]) == set()


def test_writing_a_photo_twice_keeps_one_row_the_newest(store_url):
    photo_store = PhotoStore(store_url, table="duplicates")
    photo_store.ensure_table(DIM, MODEL)
    first = unit_vectors(3, seed=2)
    photo_store.insert_photos([make_photo(i) for i in range(3)], first)
    time.sleep(0.01)  # inserted_at orders the versions; keep them apart
    changed = make_photo(1, photo_description="rewritten")
    photo_store.insert_photos([changed, make_photo(2)], unit_vectors(2, seed=3), ids=[11, 12])
    assert photo_store.count() == 3
    assert photo_store.get_photo("photo-0001")["photo_description"] == "rewritten"
    results = photo_store.search(first[0], top_k=10)
    assert sorted(r["photo_id"] for r in results) == ["photo-0000", "photo-0001", "photo-0002"]
    photo_store.close()


def test_concurrent_searches_from_several_threads(filled, vectors):
    failures: list[BaseException] = []

    def search_many(offset: int) -> None:
        try:
            for i in range(offset, offset + 5):
                assert filled.search(vectors[i], top_k=3)[0]["photo_id"] == f"photo-{i:04d}"
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=search_many, args=(n * 10,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures


def test_server_errors_carry_the_servers_message(store_url):
    photo_store = PhotoStore(f"{store_url}/no_such_database", table="photos")
    with pytest.raises(StoreError) as caught:
        photo_store.ensure_table(DIM, MODEL)
    assert not isinstance(caught.value, StoreUnavailable)
    assert "no_such_database" in caught.value.message
    assert "Traceback" not in caught.value.message
    photo_store.close()


def test_a_stopped_store_is_unavailable():
    port = free_port()  # nothing listens here
    photo_store = PhotoStore(f"http://reader:s3cret@127.0.0.1:{port}", connect_timeout=1)
    assert photo_store.ping() is False
    with pytest.raises(StoreUnavailable) as caught:
        photo_store.search(unit_vectors(1, 0)[0])
    assert f"http://reader:***@127.0.0.1:{port}" in caught.value.message
    assert "s3cret" not in caught.value.message
    assert caught.value.status_code == 503 and caught.value.retry_after
    photo_store.close()


def test_pages_follow_each_other(filled, vectors):
    everything = filled.search(vectors[5], top_k=30)
    pages = [filled.search(vectors[5], top_k=10, offset=offset) for offset in (0, 10, 20)]
    assert [r["photo_id"] for page in pages for r in page] == [r["photo_id"] for r in everything]
    assert [r["rank"] for r in pages[1]] == list(range(11, 21))
    assert filled.search(vectors[5], top_k=10, offset=COUNT - 4)[-1]["rank"] == COUNT
    assert filled.search(vectors[5], top_k=10, offset=COUNT) == []


def test_collapse_drops_near_duplicates_of_better_results(store_url):
    photo_store = PhotoStore(store_url, table="bursts")
    photo_store.ensure_table(DIM, MODEL)
    base = unit_vectors(4, seed=21)
    rng = np.random.default_rng(22)
    # Photo 0 has two near copies (a burst of shots); photos 1-3 are distinct.
    copies = base[0] + rng.normal(scale=0.005, size=(2, DIM)).astype(np.float32)
    vectors = np.vstack([base, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    photo_store.insert_photos([make_photo(i) for i in range(6)], vectors)
    plain = [r["photo_id"] for r in photo_store.search(base[0], top_k=6)]
    assert set(plain[:3]) == {"photo-0000", "photo-0004", "photo-0005"}
    collapsed = photo_store.search(base[0], top_k=6, collapse=0.95)
    assert [r["photo_id"] for r in collapsed][0] == "photo-0000"
    assert {r["photo_id"] for r in collapsed} == {"photo-0000", "photo-0001", "photo-0002", "photo-0003"}
    assert [r["rank"] for r in collapsed] == [1, 2, 3, 4]
    assert "vector" not in collapsed[0]
    photo_store.close()


def test_more_like_this_uses_the_stored_vector(filled, vectors):
    similar = filled.more_like("photo-0042", top_k=5)
    expected = [r["photo_id"] for r in filled.search(vectors[42], top_k=6)][1:]
    assert [r["photo_id"] for r in similar] == expected
    assert filled.more_like("no-such-photo") is None


def test_deleted_photos_are_gone_for_every_reader(store_url):
    photo_store = PhotoStore(store_url, table="deletes")
    photo_store.ensure_table(DIM, MODEL)
    vectors = unit_vectors(5, seed=31)
    photo_store.insert_photos([make_photo(i) for i in range(5)], vectors)
    photo_store.insert_photos([make_photo(1)], vectors[1:2])  # a second version of photo 1
    assert photo_store.delete_photos(["photo-0001", "photo-0003", "photo-0404", "photo-0001"]) == 2
    assert photo_store.count() == 3
    assert photo_store.get_photo("photo-0001") is None
    assert "photo-0001" not in {r["photo_id"] for r in photo_store.search(vectors[1], top_k=5)}
    assert photo_store.existing_ids(["photo-0001", "photo-0002"]) == {"photo-0002"}
    assert photo_store.delete_photos([]) == 0
    photo_store.close()


def test_the_data_version_changes_with_every_write_and_only_then(store_url):
    photo_store = PhotoStore(store_url, table="versions")
    assert photo_store.data_version() is None  # no table yet
    photo_store.ensure_table(DIM, MODEL)
    assert photo_store.data_version() is None  # no rows yet
    vectors = unit_vectors(4, seed=41)
    photo_store.insert_photos([make_photo(i) for i in range(3)], vectors[:3])
    first = photo_store.data_version()
    photo_store.search(vectors[0], top_k=3)
    photo_store.get_photo("photo-0001")
    assert photo_store.data_version() == first  # reads change nothing
    photo_store.insert_photos([make_photo(3)], vectors[3:])
    inserted = photo_store.data_version()
    photo_store.insert_photos([make_photo(1, photo_description="rewritten")], vectors[1:2])
    rewritten = photo_store.data_version()
    photo_store.delete_photos(["photo-0002"])
    deleted = photo_store.data_version()
    assert len({first, inserted, rewritten, deleted}) == 4
    photo_store.close()


def test_duplicate_versions_take_one_place_in_the_results(store_url):
    photo_store = PhotoStore(store_url, table="versions")
    photo_store.ensure_table(DIM, MODEL)
    vectors = unit_vectors(12, seed=41)
    photo_store.insert_photos([make_photo(i) for i in range(12)], vectors)
    for _ in range(3):  # a retried task, three times over, before any merge
        photo_store.insert_photos([make_photo(i) for i in range(3)], vectors[:3])
    results = photo_store.search(vectors[0], top_k=10)
    ids = [r["photo_id"] for r in results]
    assert len(ids) == 10 == len(set(ids)) and ids[0] == "photo-0000"
    assert [r["photo_id"] for r in photo_store.search(vectors[0], top_k=5, offset=5)] == ids[5:10]
    photo_store.close()


def test_stored_terms_are_summed_in_the_server(filled, vectors):  # photo_id terms, weighted, in SQL
    extra = unit_vectors(1, seed=9)[0]
    expected = filled.search(0.5 * extra + 1.5 * vectors[7] - 0.5 * vectors[9], top_k=8)
    summed = filled.search(0.5 * extra, top_k=8, stored_terms=[("photo-0007", 1.5), ("photo-0009", -0.5)])
    assert [r["photo_id"] for r in summed] == [r["photo_id"] for r in expected]
    assert [r["score"] for r in summed] == pytest.approx([r["score"] for r in expected], abs=1e-4)
    alone = filled.search(np.zeros(DIM, np.float32), top_k=1, stored_terms=[("photo-0011", 2.0)])
    assert alone[0]["photo_id"] == "photo-0011" and alone[0]["score"] == pytest.approx(1.0, abs=1e-4)


    with pytest.raises(BadRequest, match="cancel each other out"):  # terms that cancel out are refused
        filled.search(np.zeros(DIM, np.float32), stored_terms=[("photo-0003", 1.0), ("photo-0003", -1.0)])
    with pytest.raises(NotFound, match="no-such-photo"):
        filled.search(np.zeros(DIM, np.float32), stored_terms=[("no-such-photo", 1.0)])
