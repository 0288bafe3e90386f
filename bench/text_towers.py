"""How long does one query take in each model family and text tower? Random weights, real shapes, one run.

    python -m bench.text_towers [--quick] [--size b32|tiny] [--families clip,clip+st-multilingual,...]

Writes each family's random-weight replica (`tools.random_model`, the real base-size shapes) once into
`data/models/bench-*` (kept for later runs), loads it through the embedder's own `load_towers` on the
CPU with the embedder's threads, and measures in the same run, one after another: one short Spanish
query at a time (p50 and p90 latency, after a warm-up) and texts/s at batch 32, on torch and on ONNX
Runtime side by side. The baseline is CLIP ViT-B/32's own text tower on torch; each row's ratio is its
p50 over that. Prints a table and writes
`bench/results/text-towers-<device>.json`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import format_table, machine_info, measure, offline_run, write_results

ROOT = Path(__file__).resolve().parents[1]
QUERY = "un perro corriendo en la playa al atardecer"
BATCH_TEXTS = ["una foto de una playa tropical con palmeras", "a red car parked in front of a house",
               "montañas nevadas al amanecer", "a cat sleeping on a sofa"] * 8
# (row, image family, text tower family or None for the image model's own)
CONFIGS = [
    ("clip", "clip", None),
    ("clip+st-multilingual", "clip", "st-multilingual"),
    ("clip+mclip", "clip", "mclip"),
    ("siglip", "siglip", None),
    ("siglip2", "siglip2", None),
]


def replica(family: str, size: str, aligned_to: Path | None = None) -> Path:
    from tools.random_model import write_random_model

    folder = ROOT / "data" / "models" / f"bench-{family}-{size}"
    if not (folder / "RANDOM_WEIGHTS").exists():
        started = time.perf_counter()
        write_random_model(folder, family=family, size=size, aligned_to=aligned_to)
        print(f"wrote {folder} in {time.perf_counter() - started:.0f}s")
    return folder


def run_config(row: str, image_family: str, text_family: str | None, size: str, repeats: int,
               device: str, dtype: str, backend: str) -> dict:
    from services.embedder.models import load_towers

    image = replica(image_family, size)
    text = replica(text_family, size, aligned_to=image) if text_family else None
    # Every torch call on one thread, as in the embedder (services/embedder/batcher.py).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch") as torch_thread:
        def on_thread(function):
            return torch_thread.submit(function).result()

        started = time.perf_counter()
        towers = on_thread(lambda: load_towers(str(image), str(text) if text else "same", device=device,
                                               dtype=dtype, backend=backend))
        load_s = time.perf_counter() - started
        first = on_thread(lambda: measure("first", lambda: len(towers.embed_texts([QUERY])), min_runs=1))
        one = on_thread(lambda: measure("one query", lambda: len(towers.embed_texts([QUERY])), min_runs=repeats,
                                        warmup=2))
        batch = on_thread(lambda: measure("batch 32", lambda: len(towers.embed_texts(BATCH_TEXTS)),
                                          min_runs=max(2, repeats // 10), warmup=1))
    info = towers.info()
    times = sorted(one.per_run)
    return {"row": row, "backend": info["backend"], "text_model": info["text_family"], "dim": info["dim"], "dtype": info["dtype"],
            "max_text_tokens": info["max_text_tokens"], "languages": len(info["languages"]),
            "load_s": round(load_s, 2), "first_ms": round(first.per_run[0] * 1000, 2),
            "p50_ms": round(statistics.median(times) * 1000, 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 2),
            "batch32_texts_per_s": round(batch.rate, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.text_towers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (20 instead of 100)")
    parser.add_argument("--size", choices=("b32", "tiny"), default="b32",
                        help="b32: the real base-size shapes (default); tiny: a smoke run")
    parser.add_argument("--families", help="comma-separated rows (default: " + ",".join(c[0] for c in CONFIGS) + ")")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--backends", default="torch,onnxruntime",
                        help="comma-separated: torch, onnxruntime (default both, side by side)")
    parser.add_argument("--output", help="JSON path (default bench/results/text-towers-<device>.json)")
    args = parser.parse_args(argv)
    offline_run()
    import torch

    wanted = args.families.split(",") if args.families else [c[0] for c in CONFIGS]
    unknown = set(wanted) - {c[0] for c in CONFIGS}
    if unknown:
        parser.error(f"unknown rows {', '.join(sorted(unknown))}; choose from {', '.join(c[0] for c in CONFIGS)}")
    repeats = 20 if args.quick else 100
    started = time.perf_counter()
    results = []
    for row, image_family, text_family in CONFIGS:
        if row in wanted:
            for backend in args.backends.split(","):
                results.append(run_config(row, image_family, text_family, args.size, repeats, args.device,
                                          args.dtype, backend))
                print(f"{row} on {backend}: p50 {results[-1]['p50_ms']:.1f} ms")
    # The baseline: CLIP's own text tower on torch, today's path.
    baseline = next((r["p50_ms"] for r in results if r["row"] == "clip" and r["backend"] == "torch"),
                    results[0]["p50_ms"])
    for result in results:
        result["p50_ratio_to_clip"] = round(result["p50_ms"] / baseline, 2)
    print()
    print(format_table([(r["row"], r["backend"], r["text_model"], r["max_text_tokens"], r["languages"], r["first_ms"], r["p50_ms"],
                         r["p90_ms"], r["p50_ratio_to_clip"], r["batch32_texts_per_s"]) for r in results],
                       ["towers", "backend", "text tower", "tokens", "languages", "first ms", "p50 ms", "p90 ms", "x CLIP",
                        "texts/s @32"]))
    payload = {"machine": machine_info(torch=torch.__version__, torch_threads=torch.get_num_threads()),
               "settings": {"size": args.size, "repeats": repeats, "device": args.device, "dtype": args.dtype,
                            "query": QUERY},
               "results": results, "seconds": round(time.perf_counter() - started, 1)}
    written = write_results(f"text-towers-{args.device}", payload, output=args.output)
    print(f"Wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
