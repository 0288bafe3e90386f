"""Test doubles for the worker tests (no tests here): a fake embedder HTTP app with deterministic
vectors, and a local image server.

test_worker_celery.py serves the fake embedder as
`uvicorn --factory tests.integration.worker_support:fake_embedder_app`.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image

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
    """/img/N.jpg: a distinct JPEG; /exif.jpg: a JPEG with EXIF (exif_jpeg); /broken.jpg: JPEG magic then garbage; anything else 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/img/"):
            body, status = jpeg(int(self.path.split("/")[2].split(".")[0])), 200
        elif self.path == "/exif.jpg":
            body, status = exif_jpeg(), 200
        elif self.path == "/broken.jpg":
            body, status = b"\xff\xd8\xff\xe0" + b"garbage" * 10, 200
        else:
            body, status = b"missing", 404
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def exif_jpeg() -> bytes:
    """A JPEG whose EXIF says: a Fujifilm X-T4, 2023-06-01 14:30 at +02:00, in Paris."""
    from fractions import Fraction

    from PIL import ExifTags

    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Fujifilm", "X-T4"
    exif.get_ifd(ExifTags.IFD.Exif).update({ExifTags.Base.DateTimeOriginal: "2023:06:01 14:30:00",
                                            ExifTags.Base.OffsetTimeOriginal: "+02:00"})
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({
        ExifTags.GPS.GPSLatitude: (48, 51, Fraction(2376, 100)), ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLongitude: (2, 21, Fraction(768, 100)), ExifTags.GPS.GPSLongitudeRef: "E"})
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def serve_images() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
