"""Does re-embedding a library under a new model keep every search answering? Photos/s, and searches
before against during.

    python -m bench.reembed [--photos 2000] [--quick]

Writes N small distinct JPEGs into a library root, starts every service as its own process (a private
Redis, the embedded store, the embedder with the tiny random CLIP, Celery workers, the gateway;
`tools.stack`) and ingests the folder with the real `python -m tools.ingest`. Then a search loop (one
client, each query a new text, so the text cache never answers for the embedder) runs for a while
alone, and on through `python -m tools.reembed --model <tiny random SigLIP>` from its start to its exit
(the switch). Reported: photos re-embedded per second (the command's wall time), searches made, failed
searches (not 200, or no results: must be 0), and the searches' p50 before and during.

Also measures the copy kept of each uploaded photo (JPEG quality 90, shorter side at most 512 px,
services/worker/sources.py) on generated 1600x1200 photos: the mean size per photo.
Writes `bench/results/reembed.json` (`reembed-quick.json` with --quick).
"""
from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Stopwatch, format_table, free_port, machine_info, offline_run, write_results

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-reembed-key"
BEFORE_S = 20.0


def write_folder(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        image = Image.new("RGB", (64, 48), ((i * 37) % 256, (i * 101) % 256, (i // 256 * 53) % 256))
        image.putpixel((i % 64, (i // 64) % 48), (255, 255, 255))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        (folder / f"IMG_{i:05d}.jpg").write_bytes(out.getvalue())


class Searches:
    """One client searching in a loop; (monotonic time, seconds, ok) per search."""

    def __init__(self, api_url: str):
        self.api_url = api_url
        self.done: list[tuple[float, float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    answer = client.post("/v1/search", json={"text": f"a photo number {len(self.done)}",
                                                             "top_k": 10, "mode": "vector"})
                    ok = answer.status_code == 200 and bool(answer.json().get("results"))
                except httpx.HTTPError:
                    ok = False
                self.done.append((time.monotonic(), time.perf_counter() - started, ok))

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        return [item for item in self.done if start <= item[0] <= end]


def p50_ms(items: list[tuple[float, float, bool]]) -> float | None:
    return round(statistics.median(seconds for _, seconds, _ in items) * 1000, 2) if items else None


def kept_copy_sizes(count: int = 40) -> dict[str, float]:
    """Mean bytes of the kept copy of generated 1600x1200 photos (shapes with noise, and smooth noise)."""
    import numpy as np
    from PIL import Image, ImageFilter

    from services.worker.sources import keep_copy
    from tools.sample_data import draw_photo

    rng = np.random.default_rng(0)
    sizes: dict[str, list[int]] = {"shapes": [], "textured": []}
    for index in range(count):
        image, _ = draw_photo(index, size=(1600, 1200))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=92)
        sizes["shapes"].append(len(keep_copy(out.getvalue(), max_bytes=50 << 20, max_pixels=64_000_000)))
        noise = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).resize((1600, 1200))
        out = io.BytesIO()
        noise.filter(ImageFilter.GaussianBlur(2)).save(out, format="JPEG", quality=92)
        sizes["textured"].append(len(keep_copy(out.getvalue(), max_bytes=50 << 20, max_pixels=64_000_000)))
    return {name: round(statistics.mean(values)) for name, values in sizes.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reembed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=None, help="photos in the library (default 2000; 300 with --quick)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    offline_run()
    count = args.photos or (300 if args.quick else 2000)

    from tools.random_model import write_random_clip, write_random_model
    from tools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-reembed-") as scratch:
        work = Path(scratch)
        model_a = write_random_clip(work / "clip-tiny", size="tiny")
        model_b = write_random_model(work / "siglip-tiny", family="siglip", size="tiny")
        root = work / "Pictures"
        write_folder(root / "library", count)
        ports = {name: free_port() for name in ("redis", "store", "embedder", "api", "ui")}
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0", "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(work / "store"), "STORE_TABLE": "photos_reembed",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}", "EMBEDDER_MODEL": str(model_a),
            "API_URL": f"http://127.0.0.1:{ports['api']}", "API_KEYS": API_KEY, "UI_PORT": str(ports["ui"]),
            "LIBRARY_ROOTS": str(root), "WORKER_CONCURRENCY": "2", "WORKER_METRICS_PORT": "0",
            "API_RATE_LIMIT": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=work / "logs", run_dir=work / "run", only=["store", "embedder", "worker", "api"])
        print(f"{count} photos; starting the services (logs in {work / 'logs'})")
        stack.start(timeout=300)
        try:
            ingested = subprocess.run([sys.executable, "-m", "tools.ingest", str(root / "library"),
                                       "--poll-interval", "0.5"], cwd=ROOT, env=stack.env, capture_output=True,
                                      text=True, timeout=3600)
            if ingested.returncode != 0:
                raise SystemExit(f"ingest failed:\n{ingested.stdout}\n{ingested.stderr}")
            searches = Searches(stack.env["API_URL"])
            searches.start()
            before_start = time.monotonic()
            time.sleep(BEFORE_S)
            during_start = time.monotonic()
            with Stopwatch() as watch:
                done = subprocess.run([sys.executable, "-m", "tools.reembed", "--model", str(model_b),
                                       "--poll-interval", "0.5"], cwd=ROOT, env=stack.env, capture_output=True,
                                      text=True, timeout=3600)
            during_end = time.monotonic()
            time.sleep(3)
            searches.stop()
            if done.returncode != 0:
                raise SystemExit(f"reembed failed:\n{done.stdout}\n{done.stderr}")
        finally:
            stack.stop()
    before = searches.between(before_start, during_start)
    during = searches.between(during_start, during_end)
    failed = [item for item in searches.done if not item[2]]
    rate = count / watch.seconds
    copies = kept_copy_sizes()
    print(format_table([["before", len(before), p50_ms(before)], ["during the re-embedding", len(during), p50_ms(during)]],
                       ["searches", "made", "p50 ms"]))
    print(f"re-embedded {count} photos in {watch.seconds:.1f} s: {rate:.1f} photos/s; searches made "
          f"{len(searches.done)}, failed {len(failed)} (must be 0)")
    print(f"kept copy of an uploaded 1600x1200 photo: {copies['shapes'] / 1024:.1f} KiB (flat shapes), "
          f"{copies['textured'] / 1024:.1f} KiB (textured)")
    path = write_results("reembed" + ("-quick" if args.quick else ""), {
        "machine": machine_info(), "photos": count, "model_from": "tiny random CLIP", "model_to": "tiny random SigLIP",
        "reembed_s": round(watch.seconds, 3), "photos_per_s": round(rate, 2), "searches": len(searches.done),
        "failed_searches": len(failed), "searches_before": len(before), "searches_during": len(during),
        "search_p50_ms_before": p50_ms(before), "search_p50_ms_during": p50_ms(during),
        "kept_copy_bytes_mean": copies, "command_output": done.stdout.strip().splitlines()[-1:]})
    print(f"wrote {path}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
