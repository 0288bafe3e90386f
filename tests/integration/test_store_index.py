"""The vector index of PhotoStore against the real embedded store: built, used by the search's own query
shape, kept up by later inserts, dropped; wanted once a table outgrows exact search; the index command."""
from __future__ import annotations

import time

import numpy as np
import pytest

from services.photostore import PhotoStore
from tests.integration.store_support import COUNT, DIM, MODEL, make_photo, unit_vectors


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(COUNT, seed=1)


@pytest.fixture(scope="module")
def indexed(store_url, vectors):
    """The same photos in a table with a built vector index, always searched through it (exact_below=0)."""
    photo_store = PhotoStore(store_url, table="indexed", exact_below=0)
    photo_store.ensure_table(DIM, MODEL)
    photo_store.insert_photos([make_photo(i) for i in range(COUNT)], vectors)
    yield photo_store
    photo_store.close()


def test_the_vector_index_is_built_used_and_dropped(indexed, vectors):
    assert indexed.index_status()["status"] == "Absent"
    assert "photo_embed_index" not in indexed.explain_search(vectors[0])
    status = indexed.build_index(wait=True)
    assert status["status"] == "Built" and status["type"] == "vector_similarity"
    assert indexed.build_index(wait=True)["status"] == "Built"  # idempotent

    # The search query's own shape is answered by the index; the exact setting turns it off.
    assert "photo_embed_index" in indexed.explain_search(vectors[0], filters={"photo_location_country": "Spain"})
    assert "photo_embed_index" in indexed.explain_search(vectors[0])
    assert "photo_embed_index" not in indexed.explain_search(vectors[0], exact=True)

    for i in (0, 250, 499):
        fast = indexed.search(vectors[i], top_k=10)
        slow = indexed.search(vectors[i], top_k=10, exact=True)
        assert fast[0]["photo_id"] == f"photo-{i:04d}"
        # 500 rows: HNSW finds the true neighbours.
        assert len({r["photo_id"] for r in fast} & {r["photo_id"] for r in slow}) >= 9
    assert len(indexed.search(vectors[1], top_k=20, search_width=16)) == 20
    # Deeper than max_limit_for_vector_search_queries (1000): the limit is raised for the query.
    assert len(indexed.search(vectors[1], top_k=1000, offset=100)) == COUNT - 100

    # Rows inserted after the build are indexed as they arrive.
    extra = unit_vectors(3, seed=9)
    indexed.insert_photos([make_photo(1000 + i) for i in range(3)], extra)
    assert indexed.index_status()["status"] == "Built"
    assert indexed.search(extra[2], top_k=1)[0]["photo_id"] == "photo-1002"
    indexed.drop_index()
    assert indexed.index_status()["status"] == "Absent"
    assert indexed.search(extra[2], top_k=1)[0]["photo_id"] == "photo-1002"
    indexed.drop_index()  # nothing to drop: no error


def test_the_index_command_line(store_url, capsys):
    from services.photostore import main

    photo_store = PhotoStore(store_url, table="cli")
    photo_store.ensure_table(DIM, MODEL)
    photo_store.insert_photos([make_photo(i) for i in range(20)], unit_vectors(20, seed=51))
    assert main(["index", "status", "--url", store_url, "--table", "cli"]) == 0
    assert '"status": "Absent"' in capsys.readouterr().out
    assert main(["index", "build", "--url", store_url, "--table", "cli"]) == 0
    assert '"status": "Built"' in capsys.readouterr().out
    assert main(["index", "drop", "--url", store_url, "--table", "cli"]) == 0
    assert '"status": "Absent"' in capsys.readouterr().out
    assert main(["index", "build", "--url", store_url, "--table", "never_made"]) == 1
    assert "ingest photos first" in capsys.readouterr().out
    photo_store.close()


def test_an_index_is_wanted_once_the_table_outgrows_exact_search(store_url, vectors):
    photo_store = PhotoStore(store_url, table="grows", exact_below=6)
    assert photo_store.wants_index() is False  # no table yet
    photo_store.ensure_table(DIM, MODEL)
    photo_store.insert_photos([make_photo(i) for i in range(5)], vectors[:5])
    assert photo_store.wants_index() is False  # 5 rows: exact search is fine
    photo_store.insert_photos([make_photo(i) for i in range(5, 8)], vectors[5:8])
    assert photo_store.wants_index() is True
    # Not waiting: the build goes on in the store's background; it ends Built.
    photo_store.build_index(wait=False)
    deadline = time.monotonic() + 60
    while photo_store.index_status()["status"] != "Built":
        assert time.monotonic() < deadline, photo_store.index_status()
        time.sleep(0.2)
    assert photo_store.wants_index() is False
    assert photo_store.search(vectors[7], top_k=1, exact=False)[0]["photo_id"] == "photo-0007"
    photo_store.close()
