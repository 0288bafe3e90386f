"""One in-memory fake per port, shared by every unit test that needs an embedder, a store or a job store.

Each fake names the port it stands in for in `port`, and tests/unit/test_fakes.py checks that it has
every method of that port with the port's parameters, so a fake cannot drift from the real adapter's
shape. The fakes are honest, not canned: the store ranks by real cosine similarity and counts ranks
from the first page, the embedders give each text or image its own unit vector. Every fake records
what it was asked (`queries`, `calls`) and fails on demand (`down`, `failure`) so tests assert on what
a caller sees.

    store = FakeStore(dim=8)            # PhotoStore
    store.add("cat", vector, photo_location_country="Spain")
    embedder = FakeAsyncEmbedder(dim=8)   # AsyncEmbedder, for the gateway
    embedder = FakeEmbedder(dim=8)        # Embedder (blocking), for the workers (both in tests/fake_embedders.py)
    jobs = FakeJobs()                   # JobTracker, the gateway's view of services.common.jobs.JobStore
"""
from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from services.api.deps import JobTracker
from services.common.ports import PhotoStore
from services.common.schemas import PhotoRecord

# The embedder fakes and their vectors live in tests/fake_embedders.py; imported from here as always.
from tests.fake_embedders import (  # noqa: F401
    DIM,
    MODEL,
    MULTILINGUAL_TEXT_TOWER,
    NOT_AN_IMAGE,
    FakeAsyncEmbedder,
    FakeEmbedder,
    image_vector,
    text_vector,
    unit_vector,
)


def _matches(record: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    """Equality, or any of a list: the two filter shapes the page and the tests send."""
    for column, wanted in (filters or {}).items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if record.get(column) not in allowed:
            return False
    return True


class FakeStore:
    """A photo table in memory. `add` puts a photo in directly; `ensure_table` and `insert_photos`
    behave as the real store's (a table of one model; a vector of another size is refused). Set
    `down` to make every call fail as an unreachable store does."""

    port: ClassVar[type] = PhotoStore

    def __init__(self, dim: int = DIM, model: str = MODEL, exact_below: int = 50_000) -> None:
        self.dim, self.model, self.exact_below = dim, model, exact_below
        self.photos: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
        self.table: dict[str, Any] | None = None
        self.queries: list[np.ndarray] = []  # every search's vector
        self.options: dict[str, Any] = {}  # the last search's offset and collapse
        self.index_builds = 0
        self.writes = 0  # photos added, replaced or deleted: what data_version reports
        self.down = False
        self.closed = False
        self.thumbnails: dict[str, bytes] = {}
        self.files: dict[str, tuple[str, int, float]] = {}  # path -> (photo_id, size, mtime)

    def add(self, photo_id: str, vector: np.ndarray, **metadata: Any) -> None:
        """A stored photo, without the ingest path: the URL is made up from the id."""
        record = {"photo_id": photo_id, "photo_image_url": f"http://img.test/{photo_id}.jpg", **metadata}
        self.photos[photo_id] = (record, np.asarray(vector, np.float32) / np.linalg.norm(vector))
        self.writes += 1

    def _up(self) -> None:
        if self.down:
            from services.photostore import StoreUnavailable
            raise StoreUnavailable("The store at http://store.test cannot be reached.")

    def table_info(self) -> dict[str, Any] | None:
        self._up()
        if self.table is None and not self.photos:
            return None
        return dict(self.table or {"model": self.model, "dim": self.dim})

    def ensure_table(self, dim: int, model: str) -> None:
        from services.photostore import ModelMismatch

        self._up()
        info = self.table_info()
        if info is not None and (info["model"], info["dim"]) != (model, dim):
            raise ModelMismatch(f"The table holds {info['dim']}-dimensional vectors of model {info['model']!r}, "
                                f"not {dim}-dimensional vectors of {model!r}.")
        self.table = {"model": model, "dim": dim}

    def existing_ids(self, photo_ids: Sequence[str]) -> set[str]:
        self._up()
        return {photo_id for photo_id in photo_ids if photo_id in self.photos}

    def insert_photos(self, photos: Sequence[PhotoRecord | Mapping[str, Any]], vectors: np.ndarray,
                      ids: Sequence[int] | None = None) -> int:
        from services.photostore import ModelMismatch, StoreError

        self._up()
        info = self.table_info()
        if info is None:
            raise StoreError("The table does not exist yet: call ensure_table first.")
        matrix = np.asarray(vectors, dtype=np.float32)
        if len(photos) and (matrix.ndim != 2 or matrix.shape[1] != info["dim"]):
            raise ModelMismatch(f"The table holds {info['dim']}-dimensional vectors; these have shape "
                                f"{matrix.shape}.")
        for photo, vector in zip(photos, matrix):
            record = photo if isinstance(photo, PhotoRecord) else PhotoRecord.model_validate(photo)
            self.photos[record.photo_id] = (record.model_dump(), vector)
            self.writes += 1
        return len(photos)

    def insert_thumbnails(self, thumbnails: Sequence[tuple[str, bytes]]) -> int:
        self._up()
        self.thumbnails.update(thumbnails)
        return len(thumbnails)

    def get_thumbnail(self, photo_id: str) -> bytes | None:
        self._up()
        return self.thumbnails.get(photo_id)

    def record_files(self, files: Sequence[tuple[str, str, int, float]]) -> int:
        self._up()
        self.files.update({path: (photo_id, size, mtime) for path, photo_id, size, mtime in files})
        return len(files)

    def files_under(self, prefix: str, after: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        paths = sorted(path for path in self.files if path.startswith(prefix) and path > after)[:limit]
        return [dict(zip(("path", "photo_id", "size", "mtime"), (path, *self.files[path]))) for path in paths]

    def files_of(self, photo_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for path, (photo_id, _, _) in sorted(self.files.items()):
            if photo_id in photo_ids:
                found.setdefault(photo_id, []).append(path)
        return found

    def forget_files(self, paths: Sequence[str]) -> list[str]:
        ids = {self.files.pop(path)[0] for path in paths if path in self.files}
        left = self.files_of(list(ids))
        return sorted(i for i in ids if i not in left)

    def data_version(self) -> tuple | None:
        """Changes with every photo added, replaced or deleted (and with `photos` emptied by a test)."""
        self._up()
        return (self.writes, len(self.photos)) if self.photos else None

    def delete_photos(self, photo_ids: Sequence[str]) -> int:
        present = [i for i in dict.fromkeys(photo_ids) if i in self.photos]
        for photo_id in present:
            del self.photos[photo_id]
            self.writes += 1
            self.thumbnails.pop(photo_id, None)
        self.files = {p: row for p, row in self.files.items() if row[0] not in present}
        return len(present)

    def search(self, vector: np.ndarray, top_k: int = 10, min_score: float | None = None,
               filters: dict[str, Any] | None = None, exclude_photo_id: str | None = None, *,
               offset: int = 0, collapse: float | None = None, stored_terms: Any = (),
               **options: Any) -> list[dict[str, Any]]:
        """Best first by cosine similarity; `rank` counts from the first page, as the real store's.
        `stored_terms` add stored photos' unit vectors, weighted, as the real store does in SQL."""
        self._up()
        query = np.asarray(vector, dtype=np.float32)
        self.stored_terms = list(stored_terms)
        for photo_id, weight in stored_terms:
            if photo_id not in self.photos:
                from services.common.errors import NotFound
                raise NotFound(f"No photo with photo_id {photo_id!r} is in the store.", code="photo_not_found")
            stored = self.photos[photo_id][1]
            query = query + weight * stored / np.linalg.norm(stored)
        if stored_terms and not np.linalg.norm(query) > 1e-4:
            from services.common.errors import BadRequest
            raise BadRequest("The query's terms cancel each other out.", code="terms_cancel_out")
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        self.queries.append(query)
        self.options = {"offset": offset, "collapse": collapse}
        rows = [{**record, "score": float(np.dot(stored, query)), "vector": stored}
                for photo_id, (record, stored) in self.photos.items()
                if photo_id != exclude_photo_id and _matches(record, filters)]
        rows.sort(key=lambda row: (-row["score"], row["photo_id"]))
        if min_score is not None:
            rows = [row for row in rows if row["score"] >= min_score]
        if collapse is not None:
            kept: list[dict[str, Any]] = []
            for row in rows:
                if all(float(np.dot(row["vector"], other["vector"])) < collapse for other in kept):
                    kept.append(row)
            rows = kept
        page = rows[offset:offset + top_k]
        return [{**{k: v for k, v in row.items() if k != "vector"}, "rank": offset + number}
                for number, row in enumerate(page, start=1)]

    def lexical_search(self, query: Any, *, vector: np.ndarray | None = None, top_k: int = 10, offset: int = 0,
                       filters: dict[str, Any] | None = None, exclude_photo_id: str | None = None,
                       ) -> list[dict[str, Any]]:
        """The word search (services/photostore/lexical.py) played on the descriptions: BM25 is the count of
        the query's words a photo holds; excluded words drop it; `score` is the cosine to `vector`."""
        from services.photostore.words import split_words

        self._up()
        rows = []
        for photo_id, (record, stored) in self.photos.items():
            words = set(split_words(str(record.get("photo_description") or "")))
            matched = [word for word in query.terms if word in words]
            if (matched and photo_id != exclude_photo_id and _matches(record, filters)
                    and not any(all(word in words for word in excluded) for excluded in query.excluded)):
                score = None if vector is None else float(np.dot(stored, vector) / np.linalg.norm(vector))
                rows.append({**record, "score": score, "lexical_score": float(len(matched)), "matched": matched})
        rows.sort(key=lambda row: (-row["lexical_score"], row["photo_id"]))
        return [{**row, "rank": offset + number} for number, row in enumerate(rows[offset:offset + top_k], start=1)]

    def get_photo(self, photo_id: str, with_vector: bool = False) -> dict[str, Any] | None:
        self._up()
        if photo_id not in self.photos:
            return None
        record, vector = self.photos[photo_id]
        return {**record, "vector": vector.tolist()} if with_vector else dict(record)

    def random_photo(self, filters: dict[str, Any] | None = None) -> dict[str, Any] | None:
        self._up()
        matching = [record for record, _ in self.photos.values() if _matches(record, filters)]
        return dict(random.choice(matching)) if matching else None

    def count(self) -> int:
        self._up()
        return len(self.photos)

    def facet(self, column: str, limit: int = 100) -> list[dict[str, Any]]:
        """A column's values, most photos first (then by value); empty values are left out."""
        self._up()
        counts = Counter(record.get(column) for record, _ in self.photos.values())
        ranked = sorted(((value, n) for value, n in counts.items() if value), key=lambda item: (-item[1], item[0]))
        return [{"value": value, "photos": n} for value, n in ranked[:limit]]

    def wants_index(self) -> bool:
        self._up()
        return self.count() >= self.exact_below and self.index_builds == 0

    def build_index(self, wait: bool = True) -> dict[str, Any]:
        self._up()
        self.index_builds += 1
        return {"status": "Built"}

    def ping(self) -> bool:
        self._up()
        return True

    def close(self) -> None:
        self.closed = True


class FakeJobs:
    """Jobs in a dict, counted as the Redis job store counts them."""

    port: ClassVar[type] = JobTracker

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def create(self, job_id: str | None = None, *, retry_of: str | None = None) -> str:
        job_id = job_id or uuid.uuid4().hex
        self.jobs[job_id] = {"job_id": job_id, "state": "queued", "total": 0, "succeeded": 0, "skipped": 0,
                             "failed": 0, "batches_total": 0, "batches_done": 0, "failures": [],
                             "failures_by_reason": {}, "rate": 0.0, "eta_s": None}
        if retry_of:
            self.jobs[job_id]["retry_of"] = retry_of
        return job_id

    def fail(self, job_id: str, failure: dict[str, Any]) -> None:
        """Record one failure (with its "record"), as a worker's finished batch would."""
        job = self.jobs[job_id]
        job["failed"] += 1
        job["failures"].append(failure)
        reasons = job["failures_by_reason"]
        reasons[failure["code"]] = reasons.get(failure["code"], 0) + 1

    def failures(self, job_id: str, offset: int = 0, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
        stored = self.jobs[job_id]["failures"]
        return len(stored), stored[offset:offset + limit]

    def failed_records(self, job_id: str) -> list[dict[str, Any]]:
        records = {f["record"]["photo_id"]: f["record"] for f in self.jobs[job_id]["failures"] if f.get("record")}
        return list(records.values())

    def add_batches(self, job_id: str, batches: int, photos: int) -> None:
        self.jobs[job_id]["batches_total"] += batches
        self.jobs[job_id]["total"] += photos

    def get(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        return {**job, "failures": [{k: v for k, v in f.items() if k != "record"} for f in job["failures"][:20]]}

    def ping(self) -> bool:
        return True
