"""pipeline.ingest_batch with real downloads from a local image server and small in-process fakes
for the embedder and the store: what gets inserted, skipped and failed, and why."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.fetch import FetchPolicy
from services.worker.pipeline import ingest_batch, prepare_store
from tests.integration.test_worker_support import DIM, MODEL, jpeg, serve_images, vector_of


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
        self.rows, self.inserts, self.table = {}, 0, None

    def ensure_table(self, dim, model):
        self.table = (dim, model)

    def existing_ids(self, photo_ids):
        return {photo_id for photo_id in photo_ids if photo_id in self.rows}

    def insert_photos(self, photos, vectors, ids=None):
        assert vectors.dtype == np.float32 and vectors.shape == (len(photos), DIM)
        self.inserts += 1
        self.rows.update({photo.photo_id: vector for photo, vector in zip(photos, vectors)})
        return len(photos)


@pytest.fixture(scope="module")
def images():
    server = serve_images()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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
        ("#7", "invalid_record"), ("broken", "not_an_image"), ("gone", "http_404")]
    assert all(f.reason for f in outcome.failures)
    assert embedder.calls == [6] and store.inserts == 1
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
