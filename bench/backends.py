"""Is the embedder fast on a self-hoster's CPU? Each backend over HTTP against torch eager in process.

    python -m bench.backends [--quick] [--backends torch,onnxruntime,onnxruntime-int8] [--model DIR]

One run, on the b32 random-weight CLIP (the real ViT-B/32 shapes; `tools.random_model`), float32:

- the baseline, in this process: torch eager float32 with transformers' own `CLIPProcessor`, one
  text at a time (p50 latency), and 32 JPEGs at a time (decoding, processor, model: images/s);
- for each backend, the embedder served by uvicorn in a subprocess (`EMBEDDER_BACKEND`): the first
  text after `/readyz` says ready, one text at a time over `POST /v1/embed/text` (p50), and 32 JPEGs
  per `POST /v1/embed/image` (decoding included, images/s).

The baseline runs before and after the services (they never run at the same time: 2 cores), and the
faster of its two runs counts. Headlines: HTTP text p50 over the baseline's (goal <= 0.5), image
route images/s over the baseline's (goal >= 1.45), first text over a warm one (goal <= 2). Prints a
table and writes `bench/results/backends-cpu.json`.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import format_table, free_port, machine_info, offline_run, wait_ready, write_results
from bench.embedder import jpeg_photos

ROOT = Path(__file__).resolve().parents[1]
QUERY_WORDS = ["un perro corriendo en la playa", "a red car parked in front of a house", "montañas al atardecer",
               "a cat sleeping on a sofa", "people walking in a busy street at night"]
BACKENDS = {"torch": {"EMBEDDER_BACKEND": "torch"}, "onnxruntime": {"EMBEDDER_BACKEND": "onnxruntime"},
            "onnxruntime-int8": {"EMBEDDER_BACKEND": "onnxruntime", "EMBEDDER_DTYPE": "int8"}}


def texts(count: int) -> list[str]:
    # A new text each time, as a user's queries are: no cache anywhere can answer.
    return [f"{QUERY_WORDS[i % len(QUERY_WORDS)]} {i}" for i in range(count)]


def baseline(folder: Path, photos: list[bytes], repeats: int, image_rounds: int) -> dict:
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder, dtype=torch.float32).eval()

    def one_text(text: str) -> None:
        with torch.inference_mode():
            features = model.get_text_features(**processor(text=[text], return_tensors="pt", padding=True)).pooler_output
            (features / features.norm(dim=-1, keepdim=True)).numpy()

    def images(batch: list[bytes]) -> None:
        pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in batch]
        with torch.inference_mode():
            features = model.get_image_features(**processor(images=pictures, return_tensors="pt")).pooler_output
            (features / features.norm(dim=-1, keepdim=True)).numpy()

    for text in texts(3):
        one_text(text)
    images(photos[:32])
    latencies = []
    for text in texts(repeats):
        started = time.perf_counter()
        one_text(text)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    for round_ in range(image_rounds):
        images(photos[(round_ * 32) % len(photos):][:32])
    seconds = time.perf_counter() - started
    return {"text_p50_ms": statistics.median(latencies) * 1000, "images_per_s": image_rounds * 32 / seconds}


def served(name: str, folder: Path, photos: list[bytes], repeats: int, image_rounds: int) -> dict:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMBEDDER_MODEL": str(folder), "EMBEDDER_DEVICE": "cpu",
           "EMBEDDER_DTYPE": "float32", "EMBEDDER_LOG_LEVEL": "WARNING", "EMBEDDER_TEXT_MODEL": "same",
           **BACKENDS[name]}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "services.embedder.main:create_app",
                               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env, cwd=ROOT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            ready_s = wait_ready(client, server, 900, f"the {name} embedder")
            info = client.get("/v1/model").json()
            queries = texts(repeats + 1)

            def one(text: str) -> float:
                begin = time.perf_counter()
                client.post("/v1/embed/text", json={"texts": [text]}).raise_for_status()
                return time.perf_counter() - begin

            first = one(queries[0])
            latencies = [one(text) for text in queries[1:]]
            files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos[:32])]
            client.post("/v1/embed/image", files=files).raise_for_status()
            begin = time.perf_counter()
            for round_ in range(image_rounds):
                batch = photos[(round_ * 32) % len(photos):][:32]
                client.post("/v1/embed/image",
                            files=[("images", (f"{i}.jpg", d, "image/jpeg")) for i, d in enumerate(batch)]
                            ).raise_for_status()
            seconds = time.perf_counter() - begin
    finally:
        server.terminate()
        server.wait(timeout=30)
    p50 = statistics.median(latencies) * 1000
    return {"backend": name, "ready_s": round(ready_s, 1), "first_text_ms": round(first * 1000, 2),
            "text_p50_ms": round(p50, 2), "first_over_warm": round(first * 1000 / p50, 2),
            "images_per_s": round(image_rounds * 32 / seconds, 2), "dtype": info["dtype"],
            "int8_cosine": info.get("int8_cosine"), "backend_note": info.get("backend_note")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts and images (30 and 4x32 instead of 100, 8x32)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--model", help="a CLIP folder instead of the b32 random-weight one")
    parser.add_argument("--output", help="JSON path (default bench/results/backends-cpu.json)")
    args = parser.parse_args(argv)
    offline_run()
    import torch

    names = args.backends.split(",")
    unknown = set(names) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {', '.join(sorted(unknown))}")
    repeats, rounds = (30, 4) if args.quick else (100, 8)
    photos = jpeg_photos(32 * rounds)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as scratch:
        from tools.random_model import write_random_model

        folder = Path(args.model) if args.model else write_random_model(Path(scratch) / "clip-b32", "clip", "b32")
        runs = [baseline(folder, photos, repeats, rounds)]
        rows = [served(name, folder, photos, repeats, rounds) for name in names]
        runs.append(baseline(folder, photos, repeats, rounds))
    base = {"text_p50_ms": min(r["text_p50_ms"] for r in runs), "images_per_s": max(r["images_per_s"] for r in runs)}
    for row in rows:
        row["text_ratio"] = round(row["text_p50_ms"] / base["text_p50_ms"], 2)
        row["images_ratio"] = round(row["images_per_s"] / base["images_per_s"], 2)
    table = [("torch eager in process (transformers' processor)", "", round(base["text_p50_ms"], 2), 1.0, "",
              round(base["images_per_s"], 2), 1.0)]
    table += [(f"embedder over HTTP, {r['backend']}", r["first_text_ms"], r["text_p50_ms"], r["text_ratio"],
               r["first_over_warm"], r["images_per_s"], r["images_ratio"]) for r in rows]
    print()
    print(format_table(table, ["path", "first text ms", "text p50 ms", "x baseline", "first / warm",
                               "32 JPEGs: images/s", "x baseline"]))
    print("\nGoals: text p50 <= 0.5x the baseline; image route >= 1.45x; first text <= 2x a warm one.")
    payload = {"machine": machine_info(torch=torch.__version__, torch_threads=torch.get_num_threads()),
               "settings": {"quick": args.quick, "texts": repeats, "image_batches_of_32": rounds,
                            "model": args.model or "random-weight ViT-B/32 (tools.random_model b32)"},
               "baseline": {"runs": runs, **{k: round(v, 2) for k, v in base.items()}}, "embedder": rows,
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"Wrote {write_results('backends-cpu', payload, output=args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
