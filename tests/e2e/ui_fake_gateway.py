"""A stand-in for the gateway, for the browser test of the UI until it runs on the real stack.

It answers the few endpoints the page calls, in the contract's shapes, from the photos of an
Unsplash-format TSV (`tools.sample_data`) whose images a local HTTP server serves. Ranking is a
fixed rotation of that list, not a search. Run it as its own process:
`python -m tests.e2e.ui_fake_gateway --port P --tsv photos.tsv`.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MODEL = {"name": "fake-clip", "dim": 8, "device": "cpu", "dtype": "float32", "fingerprint": "0" * 16,
         "random_weights": True}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def read_photos(tsv: Path) -> list[dict]:
    with open(tsv, newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle, delimiter="\t")]


def create_app(photos: list[dict]) -> FastAPI:
    app = FastAPI(title="fake gateway")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/stats")
    def stats() -> dict:
        return {"photos": len(photos), "model": MODEL, "random_weights": True, "table": {"name": "photos"}}

    @app.get("/v1/photos/random")
    def random_photo() -> dict:
        return random.choice(photos)

    @app.get("/v1/photos/{photo_id}")
    def get_photo(photo_id: str):
        found = [p for p in photos if p["photo_id"] == photo_id]
        return found[0] if found else _error(404, "not_found", f"No photo has the id {photo_id}.")

    @app.post("/v1/search")
    async def search(request: Request):
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            query = {key: value for key, value in form.items() if key != "image"}
            has_image = form.get("image") is not None
        else:
            query = await request.json()
            has_image = bool(query.get("image_base64") or query.get("image_url"))
        text = (query.get("text") or "").strip()
        if not text and not has_image and not query.get("photo_id"):
            return _error(422, "invalid_request", "Give a text, an image or a photo_id to search with.")
        if text == "boom":
            return _error(503, "dependency_unavailable", "The embedder is not answering; try again in a few seconds.")
        top_k = int(query.get("top_k") or 10)
        # Rotate the list by the query so different queries show different first results.
        start = sum(map(ord, text + str(query.get("photo_id") or ""))) % len(photos)
        ranked = (photos[start:] + photos[:start])[:top_k]
        results = [{**p, "score": round(0.9 - i * 0.01, 4), "rank": i + 1} for i, p in enumerate(ranked)]
        return {"results": results, "took_ms": 3.0, "model": MODEL["name"], "random_weights": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tsv", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(read_photos(args.tsv)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
