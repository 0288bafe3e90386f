"""The shared fakes (tests/fakes.py) keep the shape of the ports they stand in for, and behave as the
real adapters do where tests rely on it (ranks, model checks, failures)."""
from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest

from services.api.deps import JobTracker
from services.common.embedder_client import EmbedItemError
from services.common.ports import AsyncEmbedder, Embedder, PhotoStore
from services.photostore import ModelMismatch, StoreUnavailable
from tests.fakes import DIM, FakeAsyncEmbedder, FakeEmbedder, FakeJobs, FakeStore, image_vector, text_vector

FAKES = [(FakeStore, PhotoStore), (FakeAsyncEmbedder, AsyncEmbedder), (FakeEmbedder, Embedder),
         (FakeJobs, JobTracker)]


def _port_methods(port: type) -> list[str]:
    return [name for name, value in vars(port).items() if callable(value) and not name.startswith("_")]


def _named(method) -> list[str]:
    """The parameters a caller may name, in order (a port's `**options` leaves the rest open)."""
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [name for name, parameter in inspect.signature(method).parameters.items() if parameter.kind not in variadic]


@pytest.mark.parametrize("fake, port", FAKES, ids=lambda item: item.__name__)
def test_each_fake_is_an_instance_of_its_port(fake, port):
    assert fake.port is port
    assert isinstance(fake(), port)


@pytest.mark.parametrize("fake, port", FAKES, ids=lambda item: item.__name__)
def test_each_fake_takes_the_ports_parameters(fake, port):
    for name in _port_methods(port):
        wanted = _named(getattr(port, name))
        assert _named(getattr(fake, name))[:len(wanted)] == wanted, f"{fake.__name__}.{name}"
        assert inspect.iscoroutinefunction(getattr(fake, name)) == inspect.iscoroutinefunction(getattr(port, name))


def test_the_store_fake_implements_every_port_method_itself():
    assert set(_port_methods(PhotoStore)) <= set(vars(FakeStore))


def test_the_store_ranks_by_cosine_similarity_and_counts_ranks_from_the_first_page():
    store = FakeStore()
    for name in ("a", "b", "c", "d"):
        store.add(name, image_vector(name.encode()))
    query = image_vector(b"c")
    everything = store.search(query, top_k=4)
    assert everything[0]["photo_id"] == "c" and everything[0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert [row["score"] for row in everything] == sorted((row["score"] for row in everything), reverse=True)
    second = store.search(query, top_k=2, offset=2)
    assert [(row["photo_id"], row["rank"]) for row in second] == [(row["photo_id"], row["rank"])
                                                                  for row in everything[2:]]
    assert [row["rank"] for row in everything] == [1, 2, 3, 4]


def test_the_store_keeps_one_model_per_table_and_reports_what_it_holds():
    store = FakeStore()
    assert store.table_info() is None and store.count() == 0
    store.ensure_table(DIM, "fake-clip")
    with pytest.raises(ModelMismatch):
        store.ensure_table(DIM + 1, "fake-clip")
    vectors = np.stack([image_vector(b"x"), image_vector(b"y")])
    photos = [{"photo_id": "x", "photo_image_url": "http://img.test/x.jpg", "photo_location_country": "Peru"},
              {"photo_id": "y", "photo_image_url": "http://img.test/y.jpg", "photo_location_country": "Peru"}]
    assert store.insert_photos(photos, vectors) == 2
    with pytest.raises(ModelMismatch):
        store.insert_photos(photos[:1], np.zeros((1, DIM + 1), np.float32))
    assert store.existing_ids(["x", "z"]) == {"x"}
    assert store.get_photo("x")["photo_location_country"] == "Peru"
    assert store.facet("photo_location_country") == [{"value": "Peru", "photos": 2}]
    assert store.random_photo({"photo_location_country": ["Chad", "Peru"]})["photo_id"] in {"x", "y"}
    assert store.random_photo({"photo_location_country": "Chad"}) is None
    assert store.wants_index() is False and store.build_index()["status"] == "Built"
    store.down = True
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_the_embedders_give_each_input_its_own_unit_vector():
    sync, remote = FakeEmbedder(), FakeAsyncEmbedder()
    np.testing.assert_allclose(sync.embed_texts(["a dog"])[0], text_vector("a dog"))
    np.testing.assert_allclose(asyncio.run(remote.embed_texts(["a dog"]))[0], text_vector("a dog"))
    np.testing.assert_allclose(asyncio.run(remote.embed_images([b"cat"]))[0], image_vector(b"cat"))
    good, bad = sync.embed_images_each([b"cat", b"not an image, really"])
    np.testing.assert_allclose(good, image_vector(b"cat"))
    assert isinstance(bad, EmbedItemError) and bad.code == "invalid_image"
    assert sync.embed_pixels(np.zeros((2, 4, 4, 3), np.uint8)).shape == (2, DIM)
    assert sync.model_info()["dim"] == DIM and asyncio.run(remote.model_info())["name"] == "fake-clip"


def test_the_jobs_fake_counts_batches_and_photos():
    jobs = FakeJobs()
    job_id = jobs.create()
    jobs.add_batches(job_id, 3, 70)
    assert jobs.get(job_id)["total"] == 70 and jobs.get(job_id)["batches_total"] == 3
    assert jobs.get("nope") is None and jobs.ping()
