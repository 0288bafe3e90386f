"""Vector search in the embedded store: insert rate, index build time, latency and recall@10.

Questions: how fast do rows go in with and without the vector index present; how long does building
the index after bulk ingestion take; how much faster than an exact scan is the indexed top-10, and
what recall@10 does it keep at each search width (`hnsw_candidate_list_size_for_search`)?

Two kinds of 512-d unit vectors: uniformly random (the worst case for HNSW: every point is about as
far from every other) and clustered, CLIP-like (a few hundred tight clusters on the sphere, queries
drawn from the same mixture). The ground truth is numpy's exact top-10 over the same matrix; the
store's exact scan (`use_skip_indexes = 0`) is the latency baseline, and the headline is the ratio of
exact to indexed latency at the width that keeps recall@10 >= 0.95.

Runs the real embedded store (`python -m services.embedded_store`) as a subprocess on a free port with a
temporary data folder, and goes through `PhotoStore` like the gateway and the workers do.

    python -m bench.store                       # 25,000 and 200,000 rows (35 minutes on 2 shared cores:
                                                # the 200,000-row uniform index build alone took 23)
    python -m bench.store --kinds clustered     # the CLIP-like data only (about 12 minutes)
    python -m bench.store --sizes 1000000       # on a bigger machine
    python -m bench.store --quick               # 5,000 rows, fewer queries: a smoke run
    python -m bench.store --sizes 1000000 --quantizations bf16,i8,f32
                                                # clustered only, each quantization of the index side by
                                                # side (bench/store_scale.py): `make bench-store SIZE=1000000`

Writes bench/results/store-<size>.json and prints a table per size.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import store_scale
from bench.common import free_port
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DIM = 512
K = 10
MODEL = "bench/synthetic-512"
RECALL_GOAL = 0.95
SPEEDUP_GOAL = 5.0


# --- data -----------------------------------------------------------------------------------------


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def uniform_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal((count, DIM), dtype=np.float32))


class ClusteredVectors:
    """A mixture of tight clusters on the sphere: a point is a centre plus noise of norm `spread`, so its
    cosine similarity to its centre is about 1/sqrt(1 + spread^2) (0.86 at 0.6), and to another point of
    its cluster about 0.73, like CLIP image vectors of one subject; other clusters are near-orthogonal."""

    def __init__(self, clusters: int, spread: float, rng: np.random.Generator):
        self.centres = uniform_vectors(clusters, rng)
        self.spread = spread

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.integers(0, len(self.centres), size=count)
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * (self.spread / np.sqrt(DIM))
        return _unit(self.centres[which] + noise)


def make_data(kind: str, size: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return uniform_vectors(size, rng), uniform_vectors(queries, rng)
    mixture = ClusteredVectors(clusters=300, spread=0.6, rng=rng)
    return mixture.sample(size, rng), mixture.sample(queries, rng)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row indices of the k most similar vectors per query, best first (numpy, in blocks)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start:start + 64] = np.take_along_axis(top, order, axis=1)
    return out


# --- the store server -------------------------------------------------------------------------------




@contextmanager
def store_server(data_dir: Path, pids: list[int] | None = None):
    """The store server's URL; its process id is appended to `pids` (memory sampling)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(data_dir.parent / "store.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(port),
                                "--data-dir", str(data_dir)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if pids is not None:
        pids.append(process.pid)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded store did not start; see {data_dir.parent / 'store.log'}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# --- measurements -----------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def insert_all(store: PhotoStore, vectors: np.ndarray, prefix: str, batch: int = 5000) -> float:
    """Insert every vector in batches; returns rows per second (record building not timed)."""
    elapsed = 0.0
    for start in range(0, len(vectors), batch):
        chunk = vectors[start:start + batch]
        photos = [PhotoRecord(photo_id=f"{prefix}{start + i:08d}", photo_image_url=f"https://img/{start + i}.jpg")
                  for i in range(len(chunk))]
        began = time.perf_counter()
        store.insert_photos(photos, chunk)
        elapsed += time.perf_counter() - began
    return len(vectors) / elapsed


def _percentiles(latencies: np.ndarray) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2)}


def run_kind(url: str, kind: str, size: int, queries: int, exact_queries: int, widths: list[int],
             seed: int) -> dict[str, Any]:
    vectors, query_vectors = make_data(kind, size, queries, seed)
    truth = exact_top_k(vectors, query_vectors)
    store = PhotoStore(url, table=f"bench_{kind}_{size}", query_timeout=3600, exact_below=0)
    store.ensure_table(DIM, MODEL)
    out: dict[str, Any] = {"kind": kind, "rows": size, "queries": queries}

    _progress(f"{kind} {size:,}: inserting")
    out["insert_rows_per_s_without_index"] = round(insert_all(store, vectors, "p"))
    _progress(f"{kind} {size:,}: building the index")
    began = time.perf_counter()
    status = store.build_index(wait=True)
    out["index_build_s"] = round(time.perf_counter() - began, 2)
    out["index_build_rows_per_s"] = round(size / out["index_build_s"])
    out["index_status"] = status["status"]
    explain = store.explain_search(query_vectors[0], K)
    out["index_used_by_search"] = "photo_embed_index" in explain

    _progress(f"{kind} {size:,}: {exact_queries} exact searches, then {queries} per width {widths}")
    found, latencies = store_scale.searches(store, query_vectors[:exact_queries], exact=True)
    out["exact"] = {**_percentiles(latencies), "recall_at_10": round(store_scale.recall_at_k(found, truth[:exact_queries]), 4),
                    "queries": exact_queries}
    exact_p50 = out["exact"]["p50_ms"]
    out["indexed"] = []
    for width in widths:
        found, latencies = store_scale.searches(store, query_vectors, exact=False, search_width=width)
        row = {"width": width, **_percentiles(latencies), "recall_at_10": round(store_scale.recall_at_k(found, truth), 4)}
        row["speedup_p50"] = round(exact_p50 / row["p50_ms"], 2) if row["p50_ms"] else None
        out["indexed"].append(row)
    good = [r for r in out["indexed"] if r["recall_at_10"] >= RECALL_GOAL]
    best = min(good, key=lambda r: r["width"]) if good else None
    out["width_reaching_recall_goal"] = best["width"] if best else None
    out["goal_met"] = bool(best and best["speedup_p50"] and best["speedup_p50"] >= SPEEDUP_GOAL)
    store.close()
    return out


def insert_with_index(url: str, size: int, seed: int) -> dict[str, Any]:
    """Rows/s into a table whose index exists before the insert (each part indexed as it is written)."""
    rows = min(size, 10_000)
    _progress(f"{size:,}: inserting {rows:,} rows with the index present")
    vectors = uniform_vectors(rows, np.random.default_rng(seed))
    store = PhotoStore(url, table=f"bench_indexed_insert_{size}", query_timeout=3600)
    store.ensure_table(DIM, MODEL)
    store.build_index(wait=True)  # on the empty table: later inserts build it per part
    rate = insert_all(store, vectors, "p", batch=2000)
    store.close()
    return {"rows": rows, "insert_rows_per_s_with_index": round(rate)}


# --- output -------------------------------------------------------------------------------------------


def print_table(report: dict[str, Any]) -> None:
    print(f"\n== {report['rows']:,} rows, {DIM}-d, top-{K}, {report['machine']['cpus']} CPUs ==")
    print(f"insert with the index present: {report['insert_with_index']['insert_rows_per_s_with_index']:,} rows/s "
          f"({report['insert_with_index']['rows']:,} rows)")
    for kind in report["kinds"]:
        print(f"\n[{kind['kind']}] insert without index {kind['insert_rows_per_s_without_index']:,} rows/s; "
              f"index build {kind['index_build_s']} s ({kind['index_build_rows_per_s']:,} rows/s); "
              f"index used by search: {kind['index_used_by_search']}")
        print(f"{'search':<14}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}{'x exact':>9}")
        exact = kind["exact"]
        print(f"{'exact':<14}{exact['p50_ms']:>9.2f}{exact['p99_ms']:>9.2f}{exact['recall_at_10']:>11.4f}{1.0:>9.2f}")
        for row in kind["indexed"]:
            print(f"{'hnsw w=' + str(row['width']):<14}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                  f"{row['recall_at_10']:>11.4f}{row['speedup_p50']:>9.2f}")
        width = kind["width_reaching_recall_goal"]
        print(f"width reaching recall@10 >= {RECALL_GOAL}: {width if width else 'none measured'}"
              + (f"; >= {SPEEDUP_GOAL}x faster than exact: {kind['goal_met']}" if width else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="25000,200000", help="comma-separated row counts (default 25000,200000)")
    parser.add_argument("--quick", action="store_true", help="5,000 rows and 50 queries: a smoke run")
    parser.add_argument("--queries", type=int, default=200, help="queries per kind for recall and latency")
    parser.add_argument("--exact-queries", type=int, default=100, help="queries timed with the exact scan")
    parser.add_argument("--widths", default="16,64,256,1000", help="search widths to measure")
    parser.add_argument("--kinds", default="clustered,uniform")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; write no JSON")
    parser.add_argument("--quantizations", default="",
                        help="e.g. bf16,i8,f32: clustered data, one index per quantization in turn (store_scale.py)")
    parser.add_argument("--hnsw-m", type=int, default=16, help="HNSW links per node (with --quantizations)")
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW build width (with --quantizations)")
    parser.add_argument("--rescore", type=int, default=4,
                        help="also search bf16/i8 with rescoring of this many x k candidates (0: off)")
    parser.add_argument("--budget-min", type=float, default=35, help="skip an index build that would not fit")
    args = parser.parse_args(argv)
    if args.quantizations:
        return main_quantizations(args)
    sizes = [5000] if args.quick else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    queries = 50 if args.quick else args.queries
    exact_queries = min(queries, 20 if args.quick else args.exact_queries)
    widths = [int(w) for w in args.widths.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    # The load average says whether other work shared the CPUs (timings then read high).
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        import chdb
        machine["chdb"] = getattr(chdb, "__version__", "?")
    except ImportError:
        pass

    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        with store_server(work / "data") as url:
            for size in sizes:
                began = time.perf_counter()
                report: dict[str, Any] = {"rows": size, "dim": DIM, "k": K, "machine": machine, "widths": widths,
                                          "recall_goal": RECALL_GOAL, "speedup_goal": SPEEDUP_GOAL}
                report["insert_with_index"] = insert_with_index(url, size, args.seed)
                report["kinds"] = []
                path = RESULTS / f"store-{size}.json"
                for i, kind in enumerate(kinds):
                    report["kinds"].append(run_kind(url, kind, size, queries, exact_queries, widths, args.seed + i))
                    report["complete"] = len(report["kinds"]) == len(kinds)
                    report["wall_s"] = round(time.perf_counter() - began, 1)
                    # Written after each kind: a 200,000-row uniform index build can take many minutes.
                    if not args.no_write and not args.quick:
                        RESULTS.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps(report, indent=2) + "\n")
                    _progress(f"{kind} {size:,} done" + ("" if args.no_write or args.quick else f"; {path.name}"))
                print_table(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main_quantizations(args: argparse.Namespace) -> int:
    """`--quantizations`: the million-photo run (bench/store_scale.py), a JSON and a PNG per size."""
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    widths = [int(w) for w in args.widths.split(",")]
    quantizations = [q.strip() for q in args.quantizations.split(",") if q.strip()]
    queries = 50 if args.quick else args.queries
    for size in sizes:
        # Large tables go to disk: in /dev/shm the data (2 GB per million rows, twice while merging)
        # would count against memory.
        work = Path(tempfile.mkdtemp(prefix="bench-store-", dir="/dev/shm" if size < 300_000 and
                                     Path("/dev/shm").is_dir() else None))
        pids: list[int] = []
        try:
            with store_server(work / "data", pids) as url:
                store_scale.progress(f"{size:,} rows, quantizations {quantizations}, widths {widths}")
                report = store_scale.run(url, pids[0], size, queries=queries, exact_queries=min(queries, 10),
                                         widths=widths, quantizations=quantizations, m=args.hnsw_m,
                                         ef_construction=args.ef_construction, seed=args.seed,
                                         budget_s=args.budget_min * 60, rescore_multiplier=args.rescore)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        store_scale.print_table(report)
        if not args.no_write:
            RESULTS.mkdir(parents=True, exist_ok=True)
            path = RESULTS / f"store-{size}-quantization{'-quick' if args.quick else ''}.json"
            path.write_text(json.dumps(report, indent=2) + "\n")
            store_scale.plot(report, path.with_suffix(".png"))
            store_scale.progress(f"wrote {path.name} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
