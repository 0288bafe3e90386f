"""The gateway under unit test: the shared fakes (tests/fakes.py) wired into a `Services`, with five
photos stored, a queue that only counts, and a fetcher that serves the images a test puts in `urls`.

Used by the tests/unit/test_api_*.py files; they declare their own `fakes` and `client` fixtures from
`GatewayFakes` and `gateway_client`, so each file reads on its own.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from services.api.config import ApiSettings
from services.api.deps import Services
from services.api.main import create_app
from services.common.fetch import FetchError
from tests.fakes import DIM, FakeAsyncEmbedder, FakeJobs, FakeStore, image_vector, text_vector

KEY = "test-key"
PHOTOS = [{"photo_id": f"p{i}", "photo_image_url": f"http://img.test/p{i}.jpg"} for i in range(70)]

__all__ = ["DIM", "KEY", "PHOTOS", "GatewayFakes", "error_of", "gateway_client", "image_vector", "make_settings",
           "text_vector"]


class GatewayFakes:
    """Every adapter the gateway talks to, as fakes: red, green, blue, cat and dog are stored (red and
    cat in Spain, the others in France), each with its name's image vector."""

    def __init__(self) -> None:
        self.embedder = FakeAsyncEmbedder()
        self.store = FakeStore()
        self.jobs = FakeJobs()
        self.enqueued: list[tuple[str, int, int]] = []
        self.queued_photos: dict[str, list[dict]] = {}
        self.urls: dict[str, bytes] = {}
        for name in ("red", "green", "blue", "cat", "dog"):
            self.store.add(name, image_vector(name.encode()), photo_description=f"a {name} photo",
                           photo_location_country="Spain" if name in ("red", "cat") else "France")

    def enqueue(self, job_id: str, photos: list[dict], batch_size: int) -> int:
        batches = math.ceil(len(photos) / batch_size)
        self.enqueued.append((job_id, len(photos), batches))
        self.queued_photos.setdefault(job_id, []).extend(photos)
        return batches

    async def fetch(self, url: str) -> bytes:
        if url not in self.urls:
            raise FetchError("http_404", f"{url} answered HTTP 404 (not found).")
        return self.urls[url]

    def services(self) -> Services:
        # No caching: a test that changes the fakes sees the change on the next request.
        return Services(embedder=self.embedder, store=self.store, jobs=self.jobs, enqueue=self.enqueue,
                        fetch=self.fetch, model_info_ttl_s=0, table_info_ttl_s=0)


def make_settings(**overrides) -> ApiSettings:
    values = {"api_keys": KEY, "max_image_bytes": 4096, **overrides}
    return ApiSettings(**values)


@contextmanager
def gateway_client(fakes: GatewayFakes, **settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(**settings), services=fakes.services())) as client:
        yield client


def error_of(response) -> dict:
    return response.json()["error"]
