"""The active record against the real embedded store: which table answers, the switch, bound clients,
kept copies of uploads, and the lookups a re-embedding makes."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from services.photostore import PhotoStore
from services.photostore.active import ActiveRecord, reembed_table_name


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _photos(count: int) -> list[dict]:
    return [{"photo_id": f"p{i:03d}", "photo_image_url": f"http://127.0.0.1:9/{i}.jpg",
             "photo_description": f"photo {i}"} for i in range(count)]


@pytest.fixture
def base(store_url):
    return f"lib_{uuid.uuid4().hex[:8]}"


def test_without_a_record_the_base_table_answers(store_url, base):
    with PhotoStore(store_url, base) as store:
        record = store.active_record()
        assert record == ActiveRecord(base)
        assert store.table == base and store.base_table == base
        store.ensure_table(8, "model-a")
        assert store.insert_photos(_photos(3), _unit(3, 8, 1)) == 3
        assert store.count() == 3


def test_a_switch_moves_searches_reads_and_inserts_to_the_new_table(store_url, base):
    with PhotoStore(store_url, base) as store, PhotoStore(store_url, base) as other_process:
        store.ensure_table(8, "model-a")
        store.insert_photos(_photos(4), _unit(4, 8, 1))
        store.insert_thumbnails([("p000", b"thumb")])
        new_name = reembed_table_name(base, "model-b")
        assert new_name.startswith(base + "_") and len(new_name) == len(base) + 9
        new = store.for_table(new_name)
        assert new.table == new_name and store.table == base
        new.ensure_table(16, "model-b")
        assert sorted(store.missing_from(new_name)) == ["p000", "p001", "p002", "p003"]
        rows = store.photos_by_id(["p001", "p002", "nope"])
        assert sorted(row["photo_id"] for row in rows) == ["p001", "p002"]
        new.insert_photos(rows, _unit(2, 16, 2))
        assert sorted(store.missing_from(new_name)) == ["p000", "p003"]
        assert other_process.table == base  # read once, kept for RECHECK_S

        stored = store.record_active(ActiveRecord(new_name, "model-b", None, 16, base))
        assert stored.table == new_name and stored.model == "model-b" and stored.previous == base
        assert store.table == new_name and store.known_dim() == 16
        assert {row["photo_id"] for row in store.search(_unit(1, 16, 3)[0], top_k=10)} == {"p001", "p002"}
        assert other_process.active_record(fresh=True).table == new_name
        assert other_process.count() == 2
        # Thumbnails stay with the library, whichever table answers.
        assert store.get_thumbnail("p000") == b"thumb"
        # A bound client keeps its table whatever the record says.
        old = store.for_table(base)
        assert old.table == base and old.count() == 4 and old.known_dim() == 8
        assert store.for_table(base) is old

        with pytest.raises(ValueError, match="active table"):
            store.drop_photo_table(new_name)
        store.record_active(ActiveRecord(base, None, None, 8, new_name, "model-b"))
        assert store.table == base and store.count() == 4
        store.drop_photo_table(new_name)
        assert store.for_table(new_name).table_info() is None
        assert store.get_thumbnail("p000") == b"thumb"


def test_kept_copies_of_uploads(store_url, base):
    with PhotoStore(store_url, base) as store:
        assert store.get_sources(["p000"]) == {}
        assert store.keep_sources([("p000", b"\xff\xd8jpeg"), ("p001", b"\x00\x01")]) == 2
        assert store.get_sources(["p000", "p001", "p002"]) == {"p000": b"\xff\xd8jpeg", "p001": b"\x00\x01"}


def test_remove_rows_leaves_thumbnails(store_url, base):
    with PhotoStore(store_url, base) as store:
        store.ensure_table(8, "model-a")
        store.insert_photos(_photos(2), _unit(2, 8, 1))
        store.insert_thumbnails([("p000", b"t")])
        store.remove_rows(["p000"])
        assert store.existing_ids(["p000", "p001"]) == {"p001"}
        assert store.get_thumbnail("p000") == b"t"


def test_a_backup_takes_the_active_record_the_kept_copies_and_the_new_table(store_url, base):
    from services.backup.store import StoreHttp
    from services.backup.tables import library_tables

    with PhotoStore(store_url, base) as store:
        store.ensure_table(8, "model-a")
        new_name = reembed_table_name(base, "model-b")
        store.for_table(new_name).ensure_table(16, "model-b")
        store.record_active(ActiveRecord(new_name, "model-b", None, 16, base))
        store.keep_sources([("p000", b"jpeg")])
    with StoreHttp(store_url) as http:
        names = {info.name for info in library_tables(http, base)}
    assert {base, f"{base}_meta", new_name, f"{new_name}_meta", f"{base}_active", f"{base}_sources",
            f"{base}_thumbs", f"{base}_files"} <= names
