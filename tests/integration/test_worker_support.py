"""Test doubles for the worker tests (no tests here): a fake embedder HTTP app, a Redis-backed fake store,
an image server, and a Celery app that swaps in the fake store when TEST_WORKER_FAKE_STORE is set.

Started as `celery -A tests.integration.test_worker_support worker ...` by test_worker_celery.py.
The fake store is used only when the real embedded store server cannot be started.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import threading
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from services.worker import tasks
from services.worker.celery_app import app  # noqa: F401 - the app celery -A finds here

DIM = 16
MODEL = "fake/clip-test"


def jpeg(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def vector_of(body: bytes) -> np.ndarray:
    """Deterministic unit vector per image bytes: the same image always gets the same vector."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(body).digest()[:8], "little"))
    vector = rng.standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def fake_embedder_app():
    api = FastAPI()

    @api.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @api.get("/v1/model")
    def model():
        return {"name": MODEL, "dim": DIM, "device": "cpu", "dtype": "float32", "fingerprint": "fake",
                "random_weights": True}

    @api.post("/v1/embed/image")
    async def embed(images: Annotated[list[UploadFile], File()], per_item: bool = False):
        vectors, errors = [], []
        for index, upload in enumerate(images):
            body = await upload.read()
            try:
                Image.open(io.BytesIO(body)).load()
            except Exception:
                vectors.append(None)
                errors.append({"code": "not_an_image", "message": f"item {index} is not a readable image"})
                continue
            vectors.append(vector_of(body).tolist())
            errors.append(None)
        answer = {"model": MODEL, "dim": DIM, "vectors": vectors}
        if per_item:
            answer["errors"] = errors
        return answer

    return api


class ImageHandler(http.server.BaseHTTPRequestHandler):
    """/img/N.jpg: a distinct JPEG; /broken.jpg: JPEG magic then garbage; anything else 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/img/"):
            body, status = jpeg(int(self.path.split("/")[2].split(".")[0])), 200
        elif self.path == "/broken.jpg":
            body, status = b"\xff\xd8\xff\xe0" + b"garbage" * 10, 200
        else:
            body, status = b"missing", 404
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_images() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class FakeStore:
    """The PhotoStore calls the worker makes, kept in a Redis hash so the test process can read them."""

    def __init__(self, redis_url: str, table: str = "photos"):
        import redis

        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.rows_key, self.table_key = f"fakestore:{table}:rows", f"fakestore:{table}:table"

    def ensure_table(self, dim: int, model: str) -> None:
        self.redis.hsetnx(self.table_key, "model", model)
        self.redis.hsetnx(self.table_key, "dim", dim)

    def table_info(self):
        info = self.redis.hgetall(self.table_key)
        return {"model": info["model"], "dim": int(info["dim"])} if info else None

    def existing_ids(self, photo_ids):
        present = self.redis.hmget(self.rows_key, list(photo_ids)) if photo_ids else []
        return {photo_id for photo_id, row in zip(photo_ids, present) if row is not None}

    def insert_photos(self, photos, vectors, ids=None) -> int:
        mapping = {photo.photo_id: json.dumps({**photo.model_dump(), "vector": vector.tolist()})
                   for photo, vector in zip(photos, vectors)}
        self.redis.hset(self.rows_key, mapping=mapping)
        return len(mapping)

    def get_photo(self, photo_id, with_vector=False):
        row = self.redis.hget(self.rows_key, photo_id)
        return json.loads(row) if row else None

    def count(self) -> int:
        return self.redis.hlen(self.rows_key)

    def wants_index(self) -> bool:
        exact_below = int(os.environ.get("STORE_EXACT_BELOW", "50000"))
        return self.count() >= exact_below and self.index_status()["status"] == "Absent"

    def build_index(self, wait: bool = True) -> dict:
        self.redis.hset(self.table_key, "index", "Built")
        self.redis.hincrby(self.table_key, "index_builds", 1)
        return self.index_status()

    def index_status(self) -> dict:
        return {"status": self.redis.hget(self.table_key, "index") or "Absent"}

    def close(self) -> None:
        self.redis.close()


if os.environ.get("TEST_WORKER_FAKE_STORE"):
    _build_real = tasks.build_resources

    def _build_with_fake_store(settings):
        resources = _build_real(settings)
        resources.store = FakeStore(settings.redis_url, settings.store_table)
        return resources

    tasks.build_resources = _build_with_fake_store
