"""The photo's time, camera and position in the real embedded store: a table made before these
columns existed gains them and keeps its rows; time ranges, camera equality and the geo filter
select the right photos; values come back as they went in."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.schemas import METADATA_FIELDS, PhotoRecord
from services.photostore import PhotoStore

DIM = 8
MODEL = "test/exif"
OLD_FIELDS = METADATA_FIELDS[:METADATA_FIELDS.index("taken_at")]
# name: (taken_at, make, model, latitude, longitude)
PLACES = {
    "paris": ("2023-06-01T12:00:00", "Fujifilm", "X-T4", 48.8566, 2.3522),
    "versailles": ("2023-12-31T23:59:59", "Fujifilm", "X-T4", 48.8049, 2.1204),
    "london": ("2024-01-01T00:00:00", "Canon", "EOS R5", 51.5072, -0.1276),
    "nowhere": (None, "", "", None, None),
}


def vectors(count: int) -> np.ndarray:
    matrix = np.random.default_rng(count).normal(size=(count, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def make_old_table(store_url: str, table: str) -> None:
    """A table made with the columns of the version before, one photo in it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("services.photostore.sql.METADATA_FIELDS", OLD_FIELDS)
        patch.setattr("services.photostore.client.METADATA_FIELDS", OLD_FIELDS)
        patch.setattr("services.photostore.migrations.METADATA_FIELDS", OLD_FIELDS)
        old = PhotoStore(store_url, table=table)
        old.ensure_table(DIM, MODEL)
        old.insert_photos([PhotoRecord(photo_id="old", photo_image_url="http://x.test/old.jpg")], vectors(1))
        old.close()


@pytest.fixture(scope="module")
def upgraded(store_url):
    """An old table opened by this version's worker (ensure_table), which adds the new columns, and
    filled with photos that have them."""
    make_old_table(store_url, "upgraded")
    store = PhotoStore(store_url, table="upgraded")
    store.ensure_table(DIM, MODEL)
    records = [PhotoRecord(photo_id=name, photo_image_url=f"http://x.test/{name}.jpg", taken_at=taken,
                           exif_camera_make=make, exif_camera_model=model, photo_location_latitude=lat,
                           photo_location_longitude=lon)
               for name, (taken, make, model, lat, lon) in PLACES.items()]
    store.insert_photos(records, vectors(len(records)))
    yield store
    store.close()


def found(store: PhotoStore, filters: dict) -> list[str]:
    return sorted(r["photo_id"] for r in store.search(vectors(1)[0], top_k=50, filters=filters))


def test_an_older_table_gains_the_new_columns_and_keeps_its_rows(upgraded):
    old = upgraded.get_photo("old")
    assert old["photo_image_url"] == "http://x.test/old.jpg"
    assert (old["taken_at"], old["exif_camera_model"], old["photo_location_latitude"]) == (None, "", None)
    upgraded.ensure_table(DIM, MODEL)  # again: nothing left to add
    assert upgraded.count() == 5


def test_the_gateway_can_search_an_old_table_before_any_worker_opens_it(store_url):
    make_old_table(store_url, "read_first")
    with PhotoStore(store_url, table="read_first") as store:
        # The old photo has no time, so a time range cannot match it.
        assert store.search(vectors(1)[0], top_k=5, filters={"taken_at": {"gte": "2020-01-01"}}) == []
        [old] = store.search(vectors(1)[0], top_k=5)
        assert old["photo_id"] == "old" and old["exif_camera_make"] == "" and old["taken_at"] is None


def test_time_camera_and_position_come_back_as_they_went_in(upgraded):
    paris = PhotoRecord.model_validate(upgraded.get_photo("paris"))
    assert paris.taken_at == "2023-06-01T12:00:00"
    assert (paris.exif_camera_make, paris.exif_camera_model) == ("Fujifilm", "X-T4")
    assert (paris.photo_location_latitude, paris.photo_location_longitude) == (48.8566, 2.3522)


def test_a_time_range_of_iso_dates(upgraded):
    assert found(upgraded, {"taken_at": {"gte": "2023-01-01", "lt": "2024-01-01"}}) == ["paris", "versailles"]
    assert found(upgraded, {"taken_at": {"gte": "2024-01-01"}}) == ["london"]
    assert found(upgraded, {"taken_at": {"lt": "2023-06-01T12:00:01+00:00"}}) == ["paris"]


def test_camera_equality_and_the_camera_list(upgraded):
    assert found(upgraded, {"exif_camera_model": "X-T4"}) == ["paris", "versailles"]
    assert found(upgraded, {"exif_camera_make": ["Canon"]}) == ["london"]
    assert upgraded.facet("exif_camera_model") == [{"value": "X-T4", "photos": 2}, {"value": "EOS R5", "photos": 1}]


def test_near_is_a_great_circle_distance(upgraded):
    # Paris to Versailles is about 17 km; London is about 344 km away.
    assert found(upgraded, {"near": {"lat": 48.8566, "lon": 2.3522, "km": 5}}) == ["paris"]
    assert found(upgraded, {"near": {"lat": 48.8566, "lon": 2.3522, "km": 20}}) == ["paris", "versailles"]
    assert found(upgraded, {"near": {"lat": 48.8566, "lon": 2.3522, "km": 400}}) == ["london", "paris", "versailles"]
    both = {"near": {"lat": 48.8566, "lon": 2.3522, "km": 400}, "taken_at": {"gte": "2023-07-01"}}
    assert found(upgraded, both) == ["london", "versailles"]
    assert upgraded.random_photo({"near": {"lat": 51.5, "lon": -0.12, "km": 10}})["photo_id"] == "london"
