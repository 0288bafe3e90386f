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
        self.found = found  # how many photos match a search in all (pages of top_k); unlimited when None
        self.facets = facets or {}  # the values /v1/facets/{field} lists, most photos first
        self.facet_error = facet_error  # raised by facet() only
        self.calls: list[tuple[str, dict]] = []
        self.timings: dict | None = None  # the gateway's `timings`, when set
        self.ingested: list[dict] = []
        self.jobs: list[dict] = [job_record()]
        self.job_error: ApiError | None = None

    def _answer(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if self.error:
            raise self.error

    def stats(self):
        self._answer("stats")
        return {"photos": 1234, "model": {"name": "clip-test", "dim": 512}, "random_weights": self.random_weights}

    def search(self, **query):
        self._answer("search", **query)
        offset, top_k = query.get("offset", 0), query.get("top_k", 10)
        end = offset + top_k if self.found is None else min(offset + top_k, self.found)
        results = [result(n, photo_description=f"photo {n}") for n in range(offset, end)]
        answer = {"results": results, "took_ms": 12.3, "model": "clip-test", "random_weights": self.random_weights}
        return {**answer, **({"timings": self.timings} if self.timings else {})}

    def ingest(self, photos, job_id=None, batch_size=None):
        self._answer("ingest", photos=photos, job_id=job_id, batch_size=batch_size)
        self.ingested.extend(photos)
        return {"job_id": job_id or "job-1", "photos": len(photos), "batches": 1}

    def job(self, job_id, rate_limit_wait=None):
        """The next of `jobs` (the job as it progresses), the last one again once they run out."""
        self._answer("job", job_id=job_id, rate_limit_wait=rate_limit_wait)
        if self.job_error:
            raise self.job_error
        return self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0]

    def facet(self, field, limit=100):
        self._answer("facet", field=field, limit=limit)
        if self.facet_error:
            raise self.facet_error
        return self.facets.get(field, [])[:limit]

    def random_photo(self, **query):
        self._answer("random_photo", **query)
        return result(7, photo_description="a red door", photographer_first_name="Ana",
                      photo_url="https://unsplash.com/photos/p7")


def job_record(**fields) -> dict:
    """A job as GET /v1/jobs/{id} answers it."""
    return {"job_id": "job-1", "state": "running", "total": 10, "succeeded": 0, "skipped": 0, "failed": 0,
            "batches_total": 1, "batches_done": 0, "failures": [], "created_at": 1000.0, "updated_at": 1000.0,
            **fields}


FACETS = {
    "photo_location_country": [{"value": "Japan", "photos": 10}, {"value": "Korea, Republic of", "photos": 4},
                               {"value": "Norway", "photos": 3}],
    "photographer_username": [{"value": "ana", "photos": 1200}],
    "exif_camera_model": [{"value": "X-T4", "photos": 8}],
}


def last_query(client: FakeClient) -> dict:
    """What the last search sent to the gateway."""
    return next(query for name, query in reversed(client.calls) if name == "search")
