"""How fast does the gateway answer text queries, and what does it add to the embedder and the store?

    python -m bench.search [--photos 25000] [--queries 200] [--quick] [--model DIR]

Builds the `b32` random-weight CLIP (the real ViT-B/32 text tower, so the compute cost is real), starts
the embedded store, the embedder and the gateway as their own processes (`tools.stack`), inserts N
random unit vectors straight into the store (no ingestion: this measures search), then measures in one
run, on the same machine:

- the embedder's own text latency (`POST /v1/embed/text` through `EmbedderClient`, one text a call);
- the store's own query time (`PhotoStore.search` with a ready vector, top 10);
- the two one after the other from one client, a new text each time: what the gateway does for a new
  text, without the gateway. On 2 cores each is slower right after the other than alone (caches and
  cores go from one process to the other), so this, not the sum of the two alone, is the baseline the
  gateway's overhead is measured against; both figures are reported. It is timed in turns with the
  gateway's new-text queries (one of each, then the next), so that drift hits both alike;
- the gateway's `POST /v1/search` at concurrency 1: p50 and p99, each query a new text ("uncached"),
  one text over and over ("repeated": the gateway's kept answer, after checking the table's data
  version), the same with `Cache-Control: no-cache` (the text vector cache alone: the store searches
  each time), and "Load more" (the second page of a new text, after its first); for each, how many
  texts the embedder embedded meanwhile (its /metrics counter: the repeated runs must leave it at the
  one first ask) and the p50 of the gateway's own `timings` (`embed_ms`, `store_ms`); and its
  throughput at concurrency 8 and 32 (errors counted);
- the original article's search: CLIP in the app's process and one SQL query with the vector written in
  (bench/ingest.py's `Seed`), over a copy of the same photos;
- the query modes (bench/search_modes.py): vector, lexical and hybrid at one client, in turns, each text
  new, over the photos' descriptions (eight words each from a vocabulary); hybrid's p50 over vector's.
  The figures above are vector mode's (API_SEARCH_MODE=vector here), comparable with earlier runs.

Prints a table and writes `bench/results/search-cpu.json`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import Measurement, format_table, free_port, machine_info, offline_run, write_results
from bench.ingest import SEED_TABLE, Seed, _percentile
from bench.search_modes import description, measure_modes, vocabulary
from bench.search_modes import headline as modes_headline

TABLE = "photos_bench"
TOP_K = 10
GOALS = {"gateway_overhead_p50_ms": 5.0, "repeated_p50_ms": 15.0, "errors_at_32": 0}
WORDS = ["red", "quiet", "beach", "mountain", "city", "dog", "sunset", "forest", "boat", "market", "snow",
         "bridge", "flower", "desert", "train", "window", "coffee", "river", "night", "child"]


def texts(count: int, seed: int = 0) -> list[str]:
    """`count` different short queries (nothing repeats, so nothing could be served from a cache)."""
    rng = np.random.default_rng(seed)
    return [f"a {' '.join(rng.choice(WORDS, 3))} photo number {i}" for i in range(count)]


def latency(label: str, call, inputs: list, warmup: int = 3, warm: list | None = None, before=None) -> Measurement:
    """`call(x)` for each input, one after another; p50 and p99 in `extra`. Warmed up on `warm`, by
    default the first inputs (an uncached path must warm up on other inputs, or it measures the cache).
    `before(x)`, if given, runs untimed right before each timed call."""
    for item in (inputs[:warmup] if warm is None else warm):
        call(item)
    times = []
    for item in inputs:
        if before is not None:
            before(item)
        started = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - started)
    print(f"  {label}: p50 {_percentile(times, 50) * 1000:.1f} ms", flush=True)
    return Measurement(label, len(times), sum(times), times, _percentiles(times))


def paired(first: tuple[str, Any, list], second: tuple[str, Any, list], warmup: int = 3) -> tuple[Measurement, Measurement]:
    """Two paths timed in turns, input by input (`(label, call, inputs)` each), so that the machine's drift
    during the run (other load, CPU frequency, caches) weighs on both alike; warmed up on `warmup` inputs of
    their own that are not measured."""
    (label_a, call_a, inputs_a), (label_b, call_b, inputs_b) = first, second
    for number in range(warmup):
        call_a(f"a warm-up text {number}")
        call_b(f"a warm-up query number {number}")
    times_a, times_b = [], []
    for item_a, item_b in zip(inputs_a, inputs_b):
        for call, item, times in ((call_a, item_a, times_a), (call_b, item_b, times_b)):
            started = time.perf_counter()
            call(item)
            times.append(time.perf_counter() - started)
    measured = []
    for label, times in ((label_a, times_a), (label_b, times_b)):
        print(f"  {label}: p50 {_percentile(times, 50) * 1000:.1f} ms", flush=True)
        measured.append(Measurement(label, len(times), sum(times), times, _percentiles(times)))
    return measured[0], measured[1]


def _percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_percentile(times, 50) * 1000, 2), "p99_ms": round(_percentile(times, 99) * 1000, 2)}


def throughput(api_url: str, queries: list[str], concurrency: int) -> Measurement:
    """`queries` through the gateway by `concurrency` clients at once; errors counted, not raised."""
    async def run() -> tuple[list[float], int, float]:
        pending = list(queries)
        times: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=limits) as client:
            async def worker() -> None:
                nonlocal errors
                while pending:
                    text = pending.pop()
                    started = time.perf_counter()
                    try:
                        response = await client.post("/v1/search", json={"text": text, "top_k": TOP_K})
                        ok = response.status_code == 200 and len(response.json()["results"]) == TOP_K
                    except httpx.HTTPError:
                        ok = False
                    times.append(time.perf_counter() - started)
                    errors += not ok

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return times, errors, time.perf_counter() - started

    times, errors, wall = asyncio.run(run())
    print(f"  {concurrency} clients: {len(times) / wall:.1f} queries/s, {errors} errors", flush=True)
    return Measurement(f"gateway, {concurrency} clients at once", len(times), wall, times,
                       {**_percentiles(times), "errors": errors, "concurrency": concurrency})


def texts_embedded(embedder_url: str) -> float:
    """How many texts the embedder has embedded since it started (its Prometheus counter)."""
    import re

    metrics = httpx.get(f"{embedder_url}/metrics", timeout=30).text
    found = re.search(r'^embedder_items_embedded_total\{kind="text"\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def fill_store(store_url: str, model: dict, count: int) -> np.ndarray:
    """`count` random unit vectors straight into the store's table (as the workers would write them)."""
    from services.common.schemas import PhotoRecord
    from services.photostore import PhotoStore

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(count, int(model["dim"]))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words, described = vocabulary(WORDS), np.random.default_rng(2)  # words for the lexical and hybrid modes
    with PhotoStore(store_url, TABLE) as store:
        store.ensure_table(int(model["dim"]), str(model["name"]))
        for start in range(0, count, 5000):
            stop = min(count, start + 5000)
            photos = [PhotoRecord(photo_id=f"photo-{i:06d}", photo_image_url=f"http://images.test/{i}.jpg",
                                  photographer_username=f"user{i % 97}", photo_description=description(i, words, described))
                      for i in range(start, stop)]
            store.insert_photos(photos, vectors[start:stop])
        assert store.count() == count, f"the store holds {store.count()} of {count} photos"
    return vectors


def copy_for_seed(seed: Seed) -> None:
    """The article's table: the same photos and vectors, in its own four columns."""
    seed.client.command(f"DROP TABLE IF EXISTS default.{SEED_TABLE}")
    seed.client.command(f"CREATE TABLE default.{SEED_TABLE} (id UInt64, photo_id String, photo_image_url String, "
                        "photo_embed Array(Float32)) ORDER BY id")
    seed.client.command(f"INSERT INTO default.{SEED_TABLE} SELECT id, photo_id, photo_image_url, photo_embed "
                        f"FROM default.{TABLE}")


def measure_all(env: dict[str, str], model_dir: Path, photos: int, queries: int) -> dict[str, Measurement]:
    from services.common.api_client import ApiClient
    from services.common.embedder_client import EmbedderClient
    from services.photostore import PhotoStore

    results: dict[str, Measurement] = {}
    with EmbedderClient(env["EMBEDDER_URL"]) as embedder, ApiClient(env["API_URL"], timeout=120) as api:
        model = embedder.model_info()
        vectors = fill_store(env["STORE_URL"], model, photos)
        print(f"{photos} photos in the store; {queries} queries per measurement")
        results["embedder"] = latency("embedder alone (one text per call)",
                                      lambda text: embedder.embed_texts([text]), texts(queries, seed=1))
        with PhotoStore(env["STORE_URL"], TABLE) as store:
            results["store"] = latency("store alone (a ready vector, top 10)",
                                       lambda i: store.search(vectors[i], top_k=TOP_K), list(range(queries)))

        timings: list[dict[str, float]] = []
        fresh = httpx.Client(base_url=env["API_URL"], timeout=120, headers={"Cache-Control": "no-cache"})

        def search(text: str, offset: int = 0, client: Any = None) -> None:
            if client is None:
                body = api.search(text=text, top_k=TOP_K, offset=offset)
            else:
                response = client.post("/v1/search", json={"text": text, "top_k": TOP_K, "offset": offset})
                response.raise_for_status()
                body = response.json()
            assert len(body["results"]) == TOP_K
            timings.append(body["timings"])

        def first_page(text: str) -> None:
            """Untimed, before "Load more": the first page, and its timings out of the figures."""
            search(text)
            timings.pop()

        def gateway_figures(name: str, embedded_before: float, others_embedded: int = 0) -> None:
            """The gateway's own `timings` and the texts the embedder embedded for it (less `others_embedded`,
            the texts of a baseline measured in turns with it)."""
            measured = timings[-results[name].items:]
            results[name].extra.update({
                "embedder_texts": round(texts_embedded(env["EMBEDDER_URL"]) - embedded_before - others_embedded),
                **{f"{part}_p50_ms": round(float(np.median([t[part] for t in measured])), 2)
                   for part in ("embed_ms", "store_ms")}})

        def through_gateway(name: str, label: str, call, inputs: list[str], warm: list[str] | None = None,
                            before=None) -> None:
            embedded = texts_embedded(env["EMBEDDER_URL"])
            timings.clear()
            results[name] = latency(label, call, inputs, warm=warm, before=before)
            gateway_figures(name, embedded)

        # A new text through the gateway, in turns with its baseline: the embedder then the store, from here.
        with PhotoStore(env["STORE_URL"], TABLE) as store:
            def one_after_the_other(text: str) -> None:
                store.search(embedder.embed_texts([text])[0], top_k=TOP_K)

            embedded = texts_embedded(env["EMBEDDER_URL"])
            timings.clear()
            results["sequence"], results["gateway_uncached"] = paired(
                ("embedder then store, one client, each text new", one_after_the_other, texts(queries, seed=4)),
                ("gateway, concurrency 1, each text new", search, texts(queries, seed=2)))
            gateway_figures("gateway_uncached", embedded, others_embedded=queries + 3)
        # The first ask (a warm-up) embeds the text and keeps the answer; every measured one reuses both.
        through_gateway("gateway_repeated", "gateway, one text repeated", search,
                        ["a quiet beach at sunset"] * queries)
        through_gateway("gateway_repeated_no_cache", "gateway, one text repeated, no-cache (text cache only)",
                        lambda text: search(text, client=fresh), ["a quiet market at night"] * queries)
        through_gateway("gateway_next_page", "gateway, Load more (page 2 of a new text)",
                        lambda text: search(text, offset=TOP_K), texts(queries, seed=5), warm=[], before=first_page)
        fresh.close()
    results.update(measure_modes(env["API_URL"], texts, queries, TOP_K))
    for clients in (8, 32):
        results[f"gateway_c{clients}"] = throughput(env["API_URL"], texts(max(queries, 4 * clients), seed=clients),
                                                    clients)
    seed = Seed(model_dir, env["STORE_URL"])
    try:
        copy_for_seed(seed)
        results["seed"] = latency("article: CLIP in process + one SQL query",
                                  lambda text: seed.search(text, TOP_K), texts(queries, seed=3))
    finally:
        seed.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, help="photos in the store (default 25000; --quick 500)")
    parser.add_argument("--queries", type=int, help="queries per latency measurement (default 200; --quick 20)")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--model", help="a CLIP checkpoint folder (default: build the b32 random-weight model)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                        help="the embedder's EMBEDDER_BACKEND (default auto: ONNX Runtime on this CPU)")
    parser.add_argument("--output", help="JSON path (default bench/results/search-cpu[-BACKEND].json)")
    args = parser.parse_args(argv)
    offline_run()
    # Stopped with SIGTERM (a timeout, kill PID): leave through `finally`, which stops the services.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    photos = args.photos or (500 if args.quick else 25_000)
    queries = args.queries or (20 if args.quick else 200)

    from tools.random_model import write_random_clip
    from tools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        work = Path(scratch)
        model_dir = Path(args.model) if args.model else write_random_clip(work / "clip-b32", size="b32")
        ports = {name: free_port() for name in ("redis", "store", "embedder", "api")}
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(work / "store"),
            "STORE_TABLE": TABLE,
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
            "EMBEDDER_MODEL": str(model_dir),
            "EMBEDDER_BACKEND": args.backend,
            "API_URL": f"http://127.0.0.1:{ports['api']}",
            "API_KEYS": "bench-search-key",
            "API_SEARCH_MODE": "vector",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=work / "logs", run_dir=work / "run", only=["store", "embedder", "api"])
        print(f"starting the store, the embedder and the gateway (logs in {work / 'logs'})")
        stack.start(timeout=300)
        load_before = os.getloadavg()
        try:
            results = measure_all(stack.env, model_dir, photos, queries)
        finally:
            stack.stop()

    p50 = {name: _percentile(m.per_run, 50) * 1000 for name, m in results.items()}
    # The gateway's result cache as its settings read it here, environment over .env (API_RESULT_CACHE_SIZE=0: off).
    from services.api.config import ApiSettings

    result_cache = ApiSettings().result_cache_size
    # What the gateway adds to doing its two calls itself, one after the other (the `sequence` baseline);
    # also against the two measured alone, which on 2 cores is lower than the sequence (see the docstring).
    overhead = p50["gateway_uncached"] - p50["sequence"]
    over_parts_alone = p50["gateway_uncached"] - p50["embedder"] - p50["store"]
    rows = [(m.label, m.items, m.extra["p50_ms"], m.extra["p99_ms"], m.rate, m.extra.get("errors", 0))
            for m in results.values()]
    print()
    print(format_table(rows, ["path", "queries", "p50 ms", "p99 ms", "queries/s", "errors"]))
    headline = {
        "gateway_overhead_p50_ms": round(overhead, 2),
        "gateway_over_parts_alone_p50_ms": round(over_parts_alone, 2),
        "sequence_p50_ms": round(p50["sequence"], 2),
        "uncached_p50_ms": round(p50["gateway_uncached"], 2),
        "repeated_p50_ms": round(p50["gateway_repeated"], 2),
        "repeated_no_cache_p50_ms": round(p50["gateway_repeated_no_cache"], 2),
        "next_page_p50_ms": round(p50["gateway_next_page"], 2),
        "repeated_embedder_texts": results["gateway_repeated"].extra["embedder_texts"],
        "embed_p50_ms": {"uncached": results["gateway_uncached"].extra["embed_ms_p50_ms"],
                         "repeated": results["gateway_repeated"].extra["embed_ms_p50_ms"]},
        "store_p50_ms": {name: results[f"gateway_{name}"].extra["store_ms_p50_ms"]
                         for name in ("uncached", "repeated", "repeated_no_cache", "next_page")},
        "seed_p50_ms": round(p50["seed"], 2),
        "ratio_seed_to_gateway_p50": round(p50["seed"] / p50["gateway_uncached"], 3),
        "queries_per_second": {"c8": round(results["gateway_c8"].rate, 2), "c32": round(results["gateway_c32"].rate, 2)},
        "errors_at_32": results["gateway_c32"].extra["errors"],
        **modes_headline(results),
    }
    met = {"gateway_overhead_p50_ms": headline["gateway_overhead_p50_ms"] <= GOALS["gateway_overhead_p50_ms"],
           "repeated_p50_ms": headline["repeated_p50_ms"] <= GOALS["repeated_p50_ms"],
           "errors_at_32": headline["errors_at_32"] <= GOALS["errors_at_32"]}
    print(f"\nHeadline: a new text takes {p50['gateway_uncached']:.1f} ms at p50 through the gateway, "
          f"{overhead:.1f} ms more than the embedder then the store from one client ({p50['sequence']:.1f} ms; the "
          f"two alone: {p50['embedder']:.1f} + {p50['store']:.1f} ms, {over_parts_alone:.1f} ms under the gateway). "
          f"A repeated text: {p50['gateway_repeated']:.1f} ms (result cache {result_cache or 'off'}; "
          f"{p50['gateway_repeated_no_cache']:.1f} ms "
          f"with no-cache, the store searching each time); Load more: {p50['gateway_next_page']:.1f} ms; the embedder "
          f"embedded the repeated text {headline['repeated_embedder_texts']} time(s) in "
          f"{results['gateway_repeated'].items + 3} asks. The article's in-process search: {p50['seed']:.1f} ms. "
          f"{headline['queries_per_second']['c32']:.1f} queries/s at 32 clients with {headline['errors_at_32']} "
          f"errors. Goals met: {met}.")
    print("Modes at one client, p50 / p99 ms: " + ", ".join(
        f"{mode} {headline['modes_p50_ms'][mode]:.1f} / {headline['modes_p99_ms'][mode]:.1f}"
        for mode in headline["modes_p50_ms"]) + f"; hybrid p50 / vector p50 = {headline['hybrid_over_vector_p50']:.2f} "
        f"(goal at most 1.3: {'met' if headline['hybrid_over_vector_goal_met'] else 'not met'}).")
    import torch

    payload = {
        "machine": machine_info(torch=torch.__version__, device="cpu",
                                load_average_before=[round(v, 2) for v in load_before],
                                note="busy: other work ran on the machine" if load_before[0] > 1.0
                                else "quiet: nothing else ran on the machine"),
        "settings": {"photos": photos, "queries": queries, "top_k": TOP_K, "api_result_cache_size": result_cache,
                     "embedder_backend": args.backend,
                     "model": args.model or "random-weight ViT-B/32 (tools.random_model b32)"},
        "measurements": {name: m.as_dict() for name, m in results.items()},
        "headline": headline,
        "goals": GOALS,
        "goals_met": met,
    }
    name = "search-cpu" if args.backend == "auto" else f"search-cpu-{args.backend}"
    written = write_results(name, payload, output=args.output)
    print(f"Wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
