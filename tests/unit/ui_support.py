"""The search page under unit test: a fake gateway client (the `ApiClient` calls the page makes) and
the result rows it answers with. Used by the tests/unit/test_ui_*.py files."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from services.common.api_client import ApiError  # noqa: E402


def result(n: int, **extra) -> dict:
    return {"photo_id": f"p{n}", "photo_image_url": f"http://img.test/p{n}.jpg", "score": 0.5 - n / 100,
            "rank": n + 1, **extra}


class FakeClient:
    """Records calls; answers like the gateway, or raises the error it is given."""

    def __init__(self, random_weights: bool = False, error: ApiError | None = None, found: int | None = None,
                 facets: dict[str, list[dict]] | None = None, facet_error: ApiError | None = None):
        self.random_weights = random_weights
        self.error = error
        self.found = found  # how many results a search finds; top_k when None
        self.facets = facets or {}  # the values /v1/facets/{field} lists, most photos first
        self.facet_error = facet_error  # raised by facet() only
        self.calls: list[tuple[str, dict]] = []

    def _answer(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if self.error:
            raise self.error

    def stats(self):
        self._answer("stats")
        return {"photos": 1234, "model": {"name": "clip-test", "dim": 512}, "random_weights": self.random_weights}

    def search(self, **query):
        self._answer("search", **query)
        count = query.get("top_k", 10) if self.found is None else self.found
        results = [result(n, photo_description=f"photo {n}") for n in range(count)]
        return {"results": results, "took_ms": 12.3, "model": "clip-test", "random_weights": self.random_weights}

    def facet(self, field, limit=100):
        self._answer("facet", field=field, limit=limit)
        if self.facet_error:
            raise self.facet_error
        return self.facets.get(field, [])[:limit]

    def random_photo(self, **query):
        self._answer("random_photo", **query)
        return result(7, photo_description="a red door", photographer_first_name="Ana",
                      photo_url="https://unsplash.com/photos/p7")


FACETS = {
    "photo_location_country": [{"value": "Japan", "photos": 10}, {"value": "Korea, Republic of", "photos": 4},
                               {"value": "Norway", "photos": 3}],
    "photographer_username": [{"value": "ana", "photos": 1200}],
    "exif_camera_model": [{"value": "X-T4", "photos": 8}],
}


def last_query(client: FakeClient) -> dict:
    """What the last search sent to the gateway."""
    return next(query for name, query in reversed(client.calls) if name == "search")
