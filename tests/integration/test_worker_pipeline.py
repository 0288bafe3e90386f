"""pipeline.ingest_batch with real downloads from a local image server and small in-process fakes
for the embedder and the store: what gets inserted, skipped and failed, and why."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.fetch import FetchPolicy
from services.worker.pipeline import ingest_batch, prepare_store
from tests.integration.worker_support import DIM, MODEL, jpeg, vector_of


class ItemError:
    def __init__(self, code, message):
        self.code, self.message = code, message


class Embedder:
    def __init__(self):
        self.calls = []

    def model_info(self):
        return {"name": MODEL, "dim": DIM}

    def embed_images_each(self, images):
        self.calls.append(len(images))
        return [vector_of(body) if body.startswith(b"\xff\xd8\xff") and len(body) > 200
                else ItemError("not_an_image", "cannot decode") for body in images]


class Store:
    def __init__(self):
        self.rows, self.inserts, self.table, self.thumbnails, self.files = {}, 0, None, {}, []

    def ensure_table(self, dim, model):
        self.table = (dim, model)

    def existing_ids(self, photo_ids):
        return {photo_id for photo_id in photo_ids if photo_id in self.rows}

    def insert_photos(self, photos, vectors, ids=None):
        assert vectors.dtype == np.float32 and vectors.shape == (len(photos), DIM)
        self.inserts += 1
        self.rows.update({photo.photo_id: vector for photo, vector in zip(photos, vectors)})
        return len(photos)

    def insert_thumbnails(self, thumbnails):
        self.thumbnails.update(thumbnails)

    def record_files(self, files):
        self.files.extend(files)


POLICY = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=5)


def test_a_batch_is_fetched_embedded_once_and_inserted_once(images):
    photos = [{"photo_id": f"p{i}", "photo_image_url": f"{images}/img/{i}.jpg", "photo_description": f"photo {i}"}
              for i in range(5)]
    photos += [{"photo_id": "gone", "photo_image_url": f"{images}/nothing.jpg"},
               {"photo_id": "broken", "photo_image_url": f"{images}/broken.jpg"},
               {"photo_id": "", "photo_image_url": f"{images}/img/9.jpg"},
               {"photo_id": "p0", "photo_image_url": f"{images}/img/0.jpg"}]
    embedder, store = Embedder(), Store()
    assert prepare_store(embedder, store)["dim"] == DIM and store.table == (DIM, MODEL)

    outcome = ingest_batch(photos, embedder, store, POLICY)

    assert (outcome.succeeded, outcome.skipped) == (5, 1)
    assert sorted((f.photo_id, f.code) for f in outcome.failures) == [
        ("#7", "invalid_record"), ("broken", "truncated_image"), ("gone", "http_404")]
    assert all(f.reason for f in outcome.failures)
    # The broken image fails while its thumbnail is made, before the embedder sees it.
    assert embedder.calls == [5] and store.inserts == 1
    assert sorted(store.thumbnails) == [f"p{i}" for i in range(5)]
    assert np.allclose(store.rows["p3"], vector_of(jpeg(3)))


def test_running_a_batch_again_skips_what_is_stored(images):
    photos = [{"photo_id": f"p{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(3)]
    embedder, store = Embedder(), Store()
    ingest_batch(photos, embedder, store, POLICY)
    again = ingest_batch(photos, embedder, store, POLICY)
    assert (again.succeeded, again.skipped, again.failures) == (0, 3, [])
    assert embedder.calls == [3] and store.inserts == 1


def test_a_batch_where_nothing_downloads_makes_no_embedder_or_store_call(images):
    embedder, store = Embedder(), Store()
    outcome = ingest_batch([{"photo_id": "x", "photo_image_url": "http://10.0.0.1/x.jpg"}], embedder, store, POLICY)
    assert outcome.succeeded == 0 and [f.code for f in outcome.failures] == ["blocked_address"]
    assert embedder.calls == [] and store.inserts == 0


class CroppingEmbedder(Embedder):
    """Takes pre-cropped pixels: a vector that is the mean colour of each crop, padded to DIM."""

    def __init__(self):
        super().__init__()
        self.pixel_calls = []

    def embed_images_each(self, images):
        raise AssertionError("a worker that crops sends pixels, not encoded images")

    def embed_pixels(self, crops):
        assert crops.dtype == np.uint8 and crops.shape[1:] == (32, 32, 3)
        self.pixel_calls.append(len(crops))
        vectors = np.zeros((len(crops), DIM), np.float32)
        vectors[:, :3] = crops.reshape(len(crops), -1, 3).mean(axis=1)
        return vectors


def test_a_worker_that_crops_sends_pixels_and_fails_undecodable_images_alone(images):
    from services.common.images import ClipCrop

    photos = [{"photo_id": f"p{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(4)]
    photos += [{"photo_id": "broken", "photo_image_url": f"{images}/broken.jpg"}]
    embedder, store = CroppingEmbedder(), Store()
    outcome = ingest_batch(photos, embedder, store, POLICY, crop=ClipCrop(40, 32, 32), max_image_pixels=10_000)
    assert outcome.succeeded == 4 and embedder.pixel_calls == [4]
    [failure] = outcome.failures
    assert failure.photo_id == "broken" and failure.code == "truncated_image"
    assert failure.reason.startswith("The image ") and "truncated" in failure.reason, failure.reason
    # Each photo's vector came from its own crop (the fake embedder's vector is the crop's mean colour).
    from services.media.decode import decode_image

    for i in range(4):
        expected = ClipCrop(40, 32, 32)(decode_image(jpeg(i), max_bytes=1 << 20, max_pixels=1 << 20))
        np.testing.assert_allclose(store.rows[f"p{i}"][:3], expected.reshape(-1, 3).mean(axis=0), atol=1e-3)


def test_a_picture_over_the_pixel_limit_fails_alone_when_the_worker_crops(images):
    from services.common.images import ClipCrop

    photos = [{"photo_id": f"p{i}", "photo_image_url": f"{images}/img/{i}.jpg"} for i in range(2)]
    outcome = ingest_batch(photos, CroppingEmbedder(), Store(), POLICY, crop=ClipCrop(40, 32, 32), max_image_pixels=10)
    assert outcome.succeeded == 0 and {f.code for f in outcome.failures} == {"image_too_large"}
    assert all("the limit is 10 pixels" in f.reason for f in outcome.failures), outcome.failures


@pytest.mark.parametrize("info, preprocess, crops", [
    ({"device": "cuda:0", "pixel_input": {"shortest_edge": 224, "crop_height": 224, "crop_width": 224,
                                          "resample": 3}}, "auto", True),
    ({"device": "cpu", "pixel_input": {"shortest_edge": 224, "crop_height": 224, "crop_width": 224,
                                       "resample": 3}}, "auto", False),
    ({"device": "cpu", "pixel_input": {"shortest_edge": 224, "crop_height": 224, "crop_width": 224,
                                       "resample": 3}}, "worker", True),
    ({"device": "cuda", "pixel_input": {"shortest_edge": 224, "crop_height": 224, "crop_width": 224,
                                        "resample": 3}}, "embedder", False),
    ({"device": "cuda", "pixel_input": None}, "worker", False),  # the model takes no pixels
    ({"device": "cuda"}, "auto", False),  # an older embedder that does not say
])
def test_where_images_are_cropped(info, preprocess, crops):
    from services.worker.pipeline import choose_crop

    chosen = choose_crop(info, preprocess)
    assert (chosen is not None) == crops
    if chosen is not None:
        assert chosen.as_dict() == info["pixel_input"]


@pytest.mark.parametrize("crop", [False, True], ids=["embedder-decodes", "worker-crops"])
def test_the_time_camera_and_place_in_a_photos_exif_are_stored_with_it(images, crop):
    from services.common.images import ClipCrop

    class RecordingStore(Store):
        def insert_photos(self, photos, vectors, ids=None):
            self.records = {photo.photo_id: photo for photo in photos}
            return super().insert_photos(photos, vectors, ids)

    store = RecordingStore()
    photos = [{"photo_id": "exif", "photo_image_url": f"{images}/exif.jpg"},
              {"photo_id": "plain", "photo_image_url": f"{images}/img/1.jpg"},
              {"photo_id": "told", "photo_image_url": f"{images}/exif.jpg", "exif_camera_model": "Source's own"}]
    embedder = CroppingEmbedder() if crop else Embedder()
    outcome = ingest_batch(photos, embedder, store, POLICY, crop=ClipCrop(40, 32, 32) if crop else None)
    assert outcome.succeeded == 3, outcome.failures
    exif = store.records["exif"]
    assert (exif.taken_at, exif.exif_camera_make, exif.exif_camera_model) == ("2023-06-01T12:30:00", "Fujifilm",
                                                                             "X-T4")
    assert exif.photo_location_latitude == pytest.approx(48.8566) and exif.photo_location_longitude > 2.35
    plain = store.records["plain"]
    assert (plain.taken_at, plain.exif_camera_make, plain.photo_location_latitude) == (None, "", None)
    assert store.records["told"].exif_camera_model == "Source's own"  # the source's value wins
