"""The store's thumbnail and file tables against the real embedded store: bytes round-trip unchanged,
file records answer re-runs and prunes, and deleting a photo takes its thumbnail and files with it."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from tests.support import embedded_store

DIM = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with embedded_store(tmp_path_factory.mktemp("store-data")) as url:
        with PhotoStore(url, "library_test") as client:
            yield client


def test_before_any_ingest_there_is_no_thumbnail_and_no_file(store):
    assert store.get_thumbnail("img-none") is None
    assert store.files_under("/photos/") == []


def test_thumbnail_bytes_round_trip_exactly_and_delete_takes_everything(store):
    store.ensure_table(DIM, "test/model")
    vector = np.eye(DIM, dtype=np.float32)[:2]
    store.insert_photos([PhotoRecord(photo_id="img-a", photo_image_url="file:///photos/a.jpg"),
                         PhotoRecord(photo_id="img-b", photo_image_url="file:///photos/b.jpg")], vector)
    # Every byte value, including NUL and invalid UTF-8, as a JPEG holds them.
    blob = bytes(range(256)) * 4 + b"\xff\xd8'\\);DROP TABLE x;--"
    store.insert_thumbnails([("img-a", blob), ("img-b", b"\xff\xd8b")])
    assert store.get_thumbnail("img-a") == blob
    store.record_files([("/photos/a.jpg", "img-a", 10, 1.5), ("/photos/copy/a.jpg", "img-a", 10, 2.0),
                        ("/photos/b.jpg", "img-b", 3, 1.0), ("/other/b.jpg", "img-b", 3, 1.0)])
    assert [f["path"] for f in store.files_under("/photos/")] == ["/photos/a.jpg", "/photos/b.jpg",
                                                                   "/photos/copy/a.jpg"]
    assert store.files_of(["img-a"]) == {"img-a": ["/photos/a.jpg", "/photos/copy/a.jpg"]}
    # One copy gone: the photo stays; both gone: it has no file left.
    assert store.forget_files(["/photos/copy/a.jpg"]) == []
    assert store.forget_files(["/photos/a.jpg"]) == ["img-a"]
    assert store.delete_photos(["img-b"]) == 1
    assert store.get_thumbnail("img-b") is None
    assert store.files_of(["img-b"]) == {}
    assert store.get_thumbnail("img-a") == blob


def test_the_file_listing_pages_by_path(store):
    store.ensure_table(DIM, "test/model")
    store.record_files([(f"/paged/{name}", f"img-{name}", 1, 1.0) for name in ("b.jpg", "a.jpg", "c/d.jpg", "c.jpg")]
                       + [("/paged-not/a.jpg", "img-x", 1, 1.0)])
    first = store.files_under("/paged/", limit=2)
    assert [row["path"] for row in first] == ["/paged/a.jpg", "/paged/b.jpg"]
    rest = store.files_under("/paged/", after=first[-1]["path"], limit=2)
    assert [row["path"] for row in rest] == ["/paged/c.jpg", "/paged/c/d.jpg"]
    assert store.files_under("/paged/", after=rest[-1]["path"], limit=2) == []
    assert len(store.files_under("/paged/")) == 4
