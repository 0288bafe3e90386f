"""How fast does the embedder turn 200 px JPEG bytes (and texts) into vectors, against the article's loop?

    python -m bench.embedder [--quick] [--device cpu|cuda] [--dtype auto|float32|bfloat16|float16|int8]
                             [--batches 1,8,32,64,128] [--http]

Builds the `b32` random-weight CLIP (the real ViT-B/32 shapes, so the compute cost is real) in a
temporary folder, draws JPEG photos about 200 px wide (the size the article downloads), and measures in
one run:

- the article's loop: `CLIPProcessor` on one PIL image, then `get_image_features`, one at a time, in
  float32 on the same device (and the same for one text at a time);
- the embedder's own path, in-process: `EmbedderService.embed_images` on requests of N JPEG byte
  strings (decoding pool, preprocessing, micro-batcher, one forward pass per batch of N, vectors
  out), two requests in flight so that decoding overlaps the forward pass; texts the same way;
- the forward pass alone on already-preprocessed pixels, and decoding + preprocessing alone;
- with `--http`, the same requests over HTTP to the service run by uvicorn in a subprocess.

The headline is the ratio of the service's best images/s to the article loop's. Prints a table and
writes `bench/results/embedder-<device>.json`.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import (
    Measurement,
    Stopwatch,
    format_table,
    free_port,
    machine_info,
    measure,
    offline_run,
    wait_ready,
    write_results,
)
from services.common.images import write_pixels

log = logging.getLogger("bench.embedder")

TEXTS = [
    "a man standing on the beach", "a red car parked in front of a house", "mountains at sunset",
    "a cat sleeping on a sofa", "una foto de una playa tropical con palmeras", "people walking in a busy city street at night",
    "a bowl of fruit on a wooden table", "aerial view of a forest in autumn with a river running through it",
]


def jpeg_photos(count: int, seed: int = 0) -> list[bytes]:
    """JPEG bytes about 200 px wide, as the article downloads them (`w=200&fit=max`, quality 75)."""
    from PIL import Image, ImageFilter

    from tools.sample_data import draw_photo

    rng = random.Random(seed)
    photos = []
    for index in range(count):
        height = rng.choice([133, 150, 200, 250, 300])
        picture, _ = draw_photo(index, size=(200, height))
        # Texture, so JPEG decoding costs what a photo costs.
        noise = Image.effect_noise((200, height), 40).convert("RGB").filter(ImageFilter.GaussianBlur(1))
        picture = Image.blend(picture, noise, 0.3)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=75)
        photos.append(buffer.getvalue())
    return photos


def query_texts(count: int) -> list[str]:
    return [f"{TEXTS[index % len(TEXTS)]} ({index})" for index in range(count)]


# -- the article's loop ----------------------------------------------------------------------------


def seed_loops(folder: Path, device: str, photos: list[bytes], texts: list[str]):
    """The article's code path, one item at a time, float32: processor, model, normalise.

    Its own `CLIPModel`, as `from_pretrained` gives it: never the embedder's, whose MLPs are rewritten
    (`fold_quick_gelu`)."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(folder)
    model = CLIPModel.from_pretrained(folder).to(device).eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def one_image(data: bytes) -> int:
        image = Image.open(io.BytesIO(data))
        inputs = processor(images=image, return_tensors="pt").to(device)
        with torch.no_grad():
            features = model.get_image_features(**inputs).pooler_output
        vector = (features / features.norm(dim=-1, keepdim=True)).cpu().numpy()
        assert vector.shape[0] == 1
        return 1

    def one_text(text: str) -> int:
        inputs = processor(text=[text], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            features = model.get_text_features(**inputs).pooler_output
        (features / features.norm(dim=-1, keepdim=True)).cpu().numpy()
        return 1

    one_image(photos[0])
    one_text(texts[0])
    sync()
    images = iter(photos)
    image_rate = measure("seed loop", lambda: one_image(next(images)), min_runs=len(photos), max_runs=len(photos))
    words = iter(texts)
    text_rate = measure("seed loop", lambda: one_text(next(words)), min_runs=len(texts), max_runs=len(texts))
    return image_rate, text_rate


# -- the embedder's path, in-process ------------------------------------------------------------


async def _send_all(service, kind: str, chunks: list[list], in_flight: int) -> None:
    semaphore = asyncio.Semaphore(in_flight)

    async def send(chunk: list) -> None:
        async with semaphore:
            if kind == "image":
                body = await service.embed_images(chunk, per_item=False)
            elif kind == "pixels":
                body = await service.embed_pixels(write_pixels(np.stack(chunk)))
            else:
                body = await service.embed_texts(chunk)
            assert len(body["vectors"]) == len(chunk)

    await asyncio.gather(*(send(chunk) for chunk in chunks))


async def service_rates(model, torch_thread, batches: list[int], photos: list[bytes], texts: list[str],
                        min_items: int, batch1_items: int, in_flight: int) -> list[tuple[str, int, Measurement]]:
    from services.embedder.config import EmbedderSettings
    from services.embedder.service import EmbedderService
    from services.media.decode import decode_image

    # What an ingest worker sends when it decodes and crops itself (WORKER_PREPROCESS=worker).
    crops = [model.crop(decode_image(data, max_bytes=1 << 26, max_pixels=1 << 26)) for data in photos]
    results = []
    for batch in batches:
        settings = EmbedderSettings(embedder_model=model.name, max_batch=batch, max_items=max(batch, 1),
                                    max_queue=batch * (in_flight + 1))
        service = EmbedderService(settings, model=model, model_thread=torch_thread)
        await service.start()
        try:
            # Warm the batch's shapes (oneDNN builds its kernels for each new shape on first use).
            await service.embed_images((photos * batch)[:batch], per_item=False)
            await service.embed_texts((texts * batch)[:batch])
            for kind, pool in (("image", photos), ("pixels", crops), ("text", texts)):
                total = batch1_items if batch == 1 else max(2 * batch, min_items)
                requests = max(1, math.ceil(total / batch))
                chunks = [[pool[(r * batch + i) % len(pool)] for i in range(batch)] for r in range(requests)]
                with Stopwatch() as watch:
                    await _send_all(service, kind, chunks, in_flight)
                elapsed = watch.seconds
                label = "embedder on cropped pixels" if kind == "pixels" else "embedder"
                results.append(("image" if kind == "pixels" else kind, batch,
                                Measurement(label, requests * batch, elapsed, [elapsed],
                                            {"requests": requests, "in_flight": in_flight},
                                            cpu_seconds=watch.cpu_seconds)))
                log.info("%s batch %d: %.1f/s", kind, batch, requests * batch / elapsed)
        finally:
            await service.stop()
    return results


def parts(model, photos: list[bytes], batch: int) -> tuple[Measurement, Measurement]:
    """Decoding + preprocessing alone (one thread), and the forward pass alone on ready pixels."""
    from services.media.decode import decode_image

    def prepare(data: bytes):
        return model.image.preprocess_images([decode_image(data, max_bytes=1 << 26, max_pixels=1 << 26)])

    prepared = iter(photos * 4)
    preprocessing = measure("decode + preprocess (1 thread)", lambda: (prepare(next(prepared)), 1)[1],
                            min_runs=min(len(photos), 64), max_runs=min(len(photos), 64))
    pixels = [prepare(data) for data in (photos * math.ceil(batch / len(photos)))[:batch]]
    model.embed_images(pixels[:2])
    forward = measure("forward pass on pixels", lambda: len(model.embed_images(pixels)), min_runs=1,
                      min_seconds=1.0, max_runs=5, batch=batch)
    return preprocessing, forward


# -- over HTTP ----------------------------------------------------------------------------------




def _files(chunk: list[bytes]) -> list:
    return [("images", (f"{index}.jpg", data, "image/jpeg")) for index, data in enumerate(chunk)]


async def _post_all(base: str, chunks: list[list[bytes]], in_flight: int) -> None:
    import httpx

    semaphore = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        async def send(chunk: list[bytes]) -> None:
            async with semaphore:
                (await client.post("/v1/embed/image", files=_files(chunk))).raise_for_status()

        await asyncio.gather(*(send(chunk) for chunk in chunks))


def http_rates(folder: Path, device: str, dtype: str, batches: list[int], photos: list[bytes], min_items: int,
               batch1_items: int, in_flight: int) -> list[tuple[str, int, Measurement]]:
    import httpx

    results = []
    for batch in batches:
        port = free_port()
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": root, "EMBEDDER_MODEL": str(folder), "EMBEDDER_DEVICE": device, "EMBEDDER_DTYPE": dtype,
               "EMBEDDER_MAX_BATCH": str(batch), "EMBEDDER_MAX_ITEMS": str(batch), "EMBEDDER_LOG_LEVEL": "WARNING",
               "EMBEDDER_MAX_QUEUE": str(batch * (in_flight + 1))}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "services.embedder.main:create_app",
                                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env, cwd=root)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                wait_ready(client, server, 300)
                total = batch1_items if batch == 1 else max(2 * batch, min_items)
                requests = max(1, math.ceil(total / batch))
                chunks = [[photos[(r * batch + i) % len(photos)] for i in range(batch)] for r in range(requests)]

                client.post("/v1/embed/image", files=_files(chunks[0][:min(batch, 4)])).raise_for_status()
                with Stopwatch() as watch:
                    asyncio.run(_post_all(base, chunks, in_flight))
                elapsed = watch.seconds
                # CPU time here is the client's only; the server's is in another process.
                results.append(("image", batch, Measurement("embedder over HTTP", requests * batch, elapsed,
                                                            [elapsed], {"requests": requests})))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results


# -- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (fewer items, batches 1, 8, 32)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16", "int8"],
                        help="the embedder's precision (auto: fp16 on CUDA, bf16 on AMX CPUs, else fp32)")
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,8,32,64,128)")
    parser.add_argument("--items", type=int, help="images/texts per batch size, at least two batches (default 256)")
    parser.add_argument("--seed-items", type=int, help="images through the article's loop (default 16)")
    parser.add_argument("--in-flight", type=int, default=2, help="concurrent requests (default 2)")
    parser.add_argument("--http", action="store_true", help="also measure over HTTP (uvicorn subprocess)")
    parser.add_argument("--model", help="an existing CLIP folder instead of the b32 random-weight model")
    parser.add_argument("--output", help="JSON path (default bench/results/embedder-<device>.json)")
    args = parser.parse_args(argv)
    offline_run()

    import torch

    from services.embedder.models import load_towers
    from services.embedder.models.runtime import cpu_has_amx, resolve_device
    from tools.random_model import write_random_clip

    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([1, 8, 32] if args.quick
                                                                              else [1, 8, 32, 64, 128])
    min_items = args.items or (16 if args.quick else 256)
    batch1_items = max(2, min_items // 4)
    seed_items = args.seed_items or (4 if args.quick else 16)
    device = resolve_device(args.device)
    kind = "cuda" if device.startswith("cuda") else "cpu"

    with tempfile.TemporaryDirectory(prefix="bench-embedder-") as scratch:
        folder = Path(args.model) if args.model else write_random_clip(Path(scratch) / "clip-b32", size="b32")
        print(f"Model: {folder}{' (random weights: the vectors are meaningless; compute cost is real)' if not args.model else ''}")
        # Every torch call of this process runs on one thread, as in the service (see its batcher:
        # a second thread doing torch work slows both down).
        torch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")

        def on_torch_thread(function, *arguments):
            return torch_thread.submit(function, *arguments).result()

        model = on_torch_thread(lambda: load_towers(str(folder), "same", device=device, dtype=args.dtype))
        print(f"Embedder: {model.info()['dtype']} on {device}, {torch.get_num_threads()} torch threads, "
              f"AMX: {cpu_has_amx()}, fast preprocessing: {model.info()['fast_preprocess']}")
        photos = jpeg_photos(max(max(batches), min_items, seed_items, 32))
        texts = query_texts(max(max(batches), min_items, seed_items))
        started = time.perf_counter()
        load_before = os.getloadavg()

        # The seed's loop runs before and after the embedder and the faster of the two counts, so
        # that load from other work on the machine cannot flatter the ratio.
        before = on_torch_thread(seed_loops, folder, device, photos[:seed_items], texts[:seed_items])
        print(f"seed loop: {before[0].rate:.2f} images/s, {before[1].rate:.2f} texts/s")
        rows = asyncio.run(service_rates(model, torch_thread, batches, photos, texts, min_items, batch1_items,
                                         args.in_flight))
        preprocessing, forward = on_torch_thread(parts, model, photos, max(batches))
        after = on_torch_thread(seed_loops, folder, device, photos[:seed_items], texts[:seed_items])
        torch_thread.shutdown()
        print(f"seed loop again: {after[0].rate:.2f} images/s, {after[1].rate:.2f} texts/s")
        seed_images = max(before[0], after[0], key=lambda m: m.rate)
        seed_texts = max(before[1], after[1], key=lambda m: m.rate)
        if args.http:
            rows += http_rates(folder, device, args.dtype, batches, photos, min_items, batch1_items, args.in_flight)
        elapsed = time.perf_counter() - started

    seed_rate = {"image": seed_images.rate, "text": seed_texts.rate}
    seed_cpu = {"image": seed_images.cpu_rate, "text": seed_texts.cpu_rate}

    def row(kind_of: str, label: str, batch: int, result: Measurement) -> tuple:
        cpu = result.cpu_rate
        return (kind_of, label, batch, result.items, result.rate, result.rate / seed_rate[kind_of],
                cpu if cpu else float("nan"), cpu / seed_cpu[kind_of] if cpu and seed_cpu[kind_of] else float("nan"))

    table = [row("image", "seed loop (CLIPProcessor + model, 1 at a time)", 1, seed_images),
             row("text", "seed loop (CLIPProcessor + model, 1 at a time)", 1, seed_texts)]
    for kind_of, batch, result in sorted(rows, key=lambda item: (item[0], item[2].label, item[1])):
        table.append(row(kind_of, result.label, batch, result))
    table.append(row("image", preprocessing.label, 1, preprocessing))
    table.append(row("image", forward.label, max(batches), forward))
    print()
    print(format_table(table, ["kind", "path", "batch", "items", "per s", "x seed", "per CPU-s", "x seed (CPU)"]))
    service_images = [result.rate for kind_of, _, result in rows if kind_of == "image" and result.label == "embedder"]
    headline = max(service_images) / seed_images.rate
    print(f"\nHeadline: the embedder embeds 200 px JPEG bytes {headline:.1f}x as fast as the article's loop "
          f"({max(service_images):.1f} vs {seed_images.rate:.2f} images/s) on {kind}, {model.info()['dtype']}.")
    print(f"Load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"(other work on the machine slows both sides; the ratio is what compares). Took {elapsed:.0f}s.")

    payload = {
        "machine": machine_info(torch=torch.__version__, device=device,
                                gpu=torch.cuda.get_device_name(0) if kind == "cuda" else None,
                                amx=cpu_has_amx(), torch_threads=torch.get_num_threads(),
                                load_average_before=[round(v, 2) for v in load_before]),
        "model": {**model.info(), "name": "random-weight ViT-B/32 (tools.random_model b32)" if not args.model
                  else model.name},
        "settings": {"quick": args.quick, "batches": batches, "items_per_batch_size": min_items,
                     "batch1_items": batch1_items, "in_flight": args.in_flight, "photo_width": 200},
        "seed_loop": {"image": seed_images.as_dict(), "text": seed_texts.as_dict(),
                      "runs": {"before": [m.as_dict() for m in before], "after": [m.as_dict() for m in after]}},
        "embedder": [{"kind": kind_of, "batch": batch, **result.as_dict(),
                      "ratio_to_seed": round(result.rate / seed_rate[kind_of], 3)} for kind_of, batch, result in rows],
        "parts": {"decode_preprocess_one_thread": preprocessing.as_dict(), "forward_on_pixels": forward.as_dict()},
        "headline": {"images_ratio_to_seed": round(headline, 3), "best_images_per_second": round(max(service_images), 3),
                     "seed_images_per_second": round(seed_images.rate, 3)},
        "seconds": round(elapsed, 1),
    }
    written = write_results(f"embedder-{kind}", payload, output=args.output)
    print(f"Wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
