"""How fast does the system ingest photos, end to end, against the article's loop?

    python -m bench.ingest [--photos 400] [--quick] [--concurrency 2] [--model DIR] [--dtype auto|float32|bfloat16|int8]

Writes N sample photos 200 px wide (the size the article downloads), serves them from a local HTTP
server, builds the `b32` random-weight CLIP (the real ViT-B/32 shapes, so the compute cost is real),
and measures in one run, on the same machine:

- the article's loop: for each URL, one keep-alive HTTP session downloads the photo (httpx standing in
  for the article's `requests.Session`, which is not installed here), `CLIPProcessor` and
  `get_image_features` embed it (float32, one at a time), then one `client.insert` of every row
  into a table like the article's, on the same store server;
- the system: every service as its own process (a private Redis, the embedded store, the embedder,
  Celery workers, the gateway; `tools.stack`), and the real `ingest` command on the photos' TSV,
  from the command's start to its exit (the job done: downloaded, embedded, inserted);
- then text queries one after another, as a person types them: the article's (CLIP in the app's
  process, the vector written into the SQL) against the gateway's `/v1/search` (embedder and store
  over HTTP), each over its own copy of the photos; median and p95 milliseconds.

The headline is the ratio of photos/s. Prints a table and writes `bench/results/ingest-<device>.json`.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Measurement, Stopwatch, format_table, free_port, machine_info, offline_run, write_results

log = logging.getLogger("bench.ingest")
ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-ingest-key"
SEED_TABLE = "seed_photos"




def photo_urls(tsv: Path) -> list[tuple[str, str]]:
    import csv

    with open(tsv, newline="") as handle:
        return [(row["photo_id"], row["photo_image_url"]) for row in csv.DictReader(handle, delimiter="\t")]


class Seed:
    """The article's code: CLIP in the app's own process (float32, one item at a time) and
    clickhouse-connect to the store, with the query vector written into the SQL text as it does."""

    def __init__(self, model_dir: Path, store_url: str):
        import clickhouse_connect
        import httpx
        from transformers import CLIPModel, CLIPProcessor

        self.processor = CLIPProcessor.from_pretrained(model_dir)
        self.model = CLIPModel.from_pretrained(model_dir).eval()
        self.session = httpx.Client()
        host, port = store_url.removeprefix("http://").split(":")
        self.client = clickhouse_connect.get_client(host=host, port=int(port))

    def close(self) -> None:
        self.session.close()
        self.client.close()

    def _unit(self, features) -> list[float]:
        return (features / features.norm(dim=-1, keepdim=True))[0].tolist()

    def process_image(self, url: str) -> list[float] | None:
        import httpx
        import torch
        from PIL import Image

        try:
            response = self.session.get(url + "?q=75&fm=jpg&w=200&fit=max")
            response.raise_for_status()
            image = Image.open(io.BytesIO(response.content))
            with torch.no_grad():
                return self._unit(self.model.get_image_features(**self.processor(images=image, return_tensors="pt"))
                                  .pooler_output)
        except httpx.HTTPError:
            return None

    def ingest(self, photos: list[tuple[str, str]]) -> Measurement:
        """Download and embed one photo at a time, then insert every row at once."""
        self.client.command(f"DROP TABLE IF EXISTS default.{SEED_TABLE}")
        self.client.command(f"CREATE TABLE default.{SEED_TABLE} (id UInt64, photo_id String, photo_image_url String, "
                            "photo_embed Array(Float32)) ORDER BY id")
        self.process_image(photos[0][1])  # the first call's one-off costs, outside the timing
        with Stopwatch() as watch:
            rows = []
            for index, (photo_id, url) in enumerate(photos):
                vector = self.process_image(url)
                if vector is not None:
                    rows.append([index, photo_id, url, vector])
            self.client.insert(f"default.{SEED_TABLE}", rows,
                               column_names=["id", "photo_id", "photo_image_url", "photo_embed"])
        stored = int(self.client.command(f"SELECT count() FROM default.{SEED_TABLE}"))
        assert stored == len(photos), f"the article's loop stored {stored} of {len(photos)} photos"
        return Measurement("seed loop (download, embed, one at a time; one insert)", len(photos), watch.seconds,
                           [watch.seconds], cpu_seconds=watch.cpu_seconds)

    def search(self, text: str, top_k: int = 10) -> list:
        """A text query: embed it here, then a full scan ordered by distance (cosineDistance stands in
        for MyScale's distance())."""
        import torch

        with torch.no_grad():
            vector = self._unit(self.model.get_text_features(**self.processor(text=[text], return_tensors="pt",
                                                                               padding=True)).pooler_output)
        return self.client.query(f"SELECT photo_id, photo_image_url, cosineDistance(photo_embed, {vector}) AS dist "
                                 f"FROM default.{SEED_TABLE} ORDER BY dist LIMIT {top_k}").result_rows


QUERIES = ["a red circle", "a blue square on a white background", "green", "a yellow triangle", "sunset over the sea",
           "a dog running on the beach", "mountains in winter", "una foto de un gato", "city lights at night",
           "a bowl of fruit", "two people walking", "a small boat on a lake"]


def query_latency(label: str, search, top_k: int, rounds: int = 3) -> Measurement:
    """Each query answered one after another (a person at the search box); the first round warms up."""
    for query in QUERIES:
        assert len(search(query, top_k)) == top_k, f"{label}: a query did not return {top_k} results"
    times = []
    for _ in range(rounds):
        for query in QUERIES:
            with Stopwatch() as watch:
                search(query, top_k)
            times.append(watch.seconds)
    return Measurement(label, len(times), sum(times), times, {"p95_ms": round(_percentile(times, 95) * 1000, 2)})


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def system_ingest(tsv: Path, count: int, env: dict[str, str]) -> tuple[Measurement, dict]:
    """The real `ingest` command against the running stack, until the job is done."""
    from services.common.api_client import ApiClient

    with Stopwatch() as watch:
        result = subprocess.run([sys.executable, "-m", "tools.ingest", str(tsv), "--api-url",
                                 env["API_URL"], "--api-key", API_KEY, "--limit", str(count)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"ingest failed:\n{output[-3000:]}")
    with ApiClient(env["API_URL"]) as client:
        photos = client.stats()["photos"]
    if photos != count:
        raise SystemExit(f"the system stored {photos} of {count} photos:\n{output[-3000:]}")
    job_line = next((line for line in output.splitlines() if line.startswith("Job ")), "")
    return (Measurement("system (ingest command: gateway, Celery workers, embedder, store)", count, watch.seconds,
                        [watch.seconds]), {"job": job_line})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, help="photos to ingest (default 400; --quick 60)")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "int8"],
                        help="the embedder's EMBEDDER_DTYPE (the article's loop is always float32)")
    parser.add_argument("--model", help="a CLIP checkpoint folder (default: build the b32 random-weight model)")
    parser.add_argument("--output", help="JSON path (default bench/results/ingest-cpu.json)")
    args = parser.parse_args(argv)
    offline_run()
    count = args.photos or (60 if args.quick else 400)

    from services.common.api_client import ApiClient
    from tools.random_model import write_random_clip
    from tools.sample_data import serve, write_sample_set
    from tools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        work = Path(scratch)
        model_dir = Path(args.model) if args.model else write_random_clip(work / "clip-b32", size="b32")
        server, _ = serve(work / "photos")
        images_url = f"http://127.0.0.1:{server.server_address[1]}"
        tsv = write_sample_set(work / "photos", count, images_url)
        ports = {name: free_port() for name in ("redis", "store", "embedder", "api", "ui")}
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(work / "store"),
            "STORE_TABLE": "photos_bench",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
            "EMBEDDER_MODEL": str(model_dir),
            "EMBEDDER_DTYPE": args.dtype,
            "API_URL": f"http://127.0.0.1:{ports['api']}",
            "API_KEYS": API_KEY,
            "UI_PORT": str(ports["ui"]),
            "FETCH_ALLOW_HOSTS": "127.0.0.1",
            "WORKER_CONCURRENCY": str(args.concurrency),
            "WORKER_METRICS_PORT": "0",  # a bench binds no fixed port
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=work / "logs", run_dir=work / "run",
                      only=["store", "embedder", "worker", "api"])
        print(f"{count} photos 200 px wide; starting the services (logs in {work / 'logs'})")
        stack.start(timeout=300)
        try:
            load_before = os.getloadavg()
            article = Seed(model_dir, env["STORE_URL"])
            try:
                seed = article.ingest(photo_urls(tsv))
                print(f"seed loop: {seed.rate:.1f} photos/s")
                system, extra = system_ingest(tsv, count, stack.env)
                print(f"system: {system.rate:.1f} photos/s ({extra['job']})")
                top_k = min(10, count)
                seed_query = query_latency("seed search (CLIP in process, SQL text)", article.search, top_k)
                with ApiClient(env["API_URL"]) as api:
                    system_query = query_latency("system search (UI's path: gateway, embedder, store over HTTP)",
                                                 lambda text, k: api.search(text=text, top_k=k)["results"], top_k)
                print(f"text query, median: seed {seed_query.median_ms:.1f} ms, system {system_query.median_ms:.1f} ms")
            finally:
                article.close()
        finally:
            stack.stop()
            server.shutdown()

    ratio = system.rate / seed.rate
    rows = [(m.label, m.items, m.seconds, m.rate, m.rate / seed.rate) for m in (seed, system)]
    print()
    print(format_table(rows, ["path", "photos", "seconds", "photos/s", "x seed"]))
    print(f"\nHeadline: the system ingests 200 px photos {ratio:.1f}x as fast as the article's loop "
          f"({system.rate:.1f} vs {seed.rate:.1f} photos/s, {args.concurrency} worker processes, same machine).")
    print(format_table([(m.label, m.items, m.median_ms, m.extra["p95_ms"]) for m in (seed_query, system_query)],
                       ["text query", "queries", "median ms", "p95 ms"]))
    import torch

    payload = {
        "machine": machine_info(torch=torch.__version__, device="cpu",
                                load_average_before=[round(v, 2) for v in load_before]),
        "settings": {"photos": count, "worker_concurrency": args.concurrency, "photo_width": 200,
                     "embedder_dtype": args.dtype,
                     "model": args.model or "random-weight ViT-B/32 (tools.random_model b32)"},
        "seed_loop": seed.as_dict(),
        "system": {**system.as_dict(), **extra},
        "seed_query": seed_query.as_dict(),
        "system_query": system_query.as_dict(),
        "headline": {"ratio_to_seed": round(ratio, 3), "system_photos_per_second": round(system.rate, 3),
                     "seed_photos_per_second": round(seed.rate, 3),
                     "query_median_ms": {"seed": round(seed_query.median_ms, 2),
                                         "system": round(system_query.median_ms, 2)}},
    }
    written = write_results("ingest-cpu", payload, output=args.output)
    print(f"Wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
