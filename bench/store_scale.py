"""A million photos on one machine: the vector index's quantizations side by side (`bench/store.py --quantizations`).

Clustered, CLIP-like 512-d vectors (bench/store.py's mixture) are generated in chunks, inserted in
chunks and folded into a running exact top-10 of the queries as they go, so neither this process nor
the ground truth ever holds the whole matrix (1,000,000 x 512 float32 is 2 GB). The rows are then
merged into one part (OPTIMIZE FINAL: one HNSW graph to search instead of one per part) and, one after
another on the same table, each quantization's index is added, built, searched at every width and
dropped: `vector_similarity('hnsw', 'cosineDistance', 512, <quantization>, M, ef_construction)`, with
bf16, i8 and f32 (full precision). Measured per quantization: build seconds, p50/p99 latency and
recall@10 per search width, and the store process's peak RSS while building and while searching
(sampled from /proc). A time budget skips a quantization whose build would not fit, and says so.

Writes bench/results/store-<size>-quantization.json and, beside it, a PNG of recall@10 against p50
latency (one line per quantization, one point per width); progress lines carry the time of day.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore, sql
from services.photostore.dialects import INDEX_NAME
from services.photostore.results import search_rows

DIM = 512
K = 10
MODEL = "bench/synthetic-512"
RECALL_GOAL = 0.95
QUANTIZATIONS = ("bf16", "i8", "f32")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- data, in chunks --------------------------------------------------------------------------------


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


class ClusteredStream:
    """bench/store.py's CLIP-like mixture (300 tight clusters, noise 0.6), drawn chunk by chunk: chunk i
    depends only on (seed, i), so a run can be reproduced without keeping anything."""

    def __init__(self, seed: int, clusters: int = 300, spread: float = 0.6):
        self.seed = seed
        self.centres = _unit(np.random.default_rng(seed).standard_normal((clusters, DIM), dtype=np.float32))
        self.spread = spread

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        which = rng.integers(0, len(self.centres), size=count)
        noise = rng.standard_normal((count, DIM), dtype=np.float32) * (self.spread / np.sqrt(DIM))
        return _unit(self.centres[which] + noise)

    def chunk(self, index: int, count: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 1, index]), count)

    def queries(self, count: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2]), count)


class RunningTopK:
    """The exact top-k rows of each query over vectors seen chunk by chunk (row numbers, best first)."""

    def __init__(self, queries: np.ndarray, k: int = K):
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.rows = np.full((len(queries), k), -1, dtype=np.int64)

    def add(self, vectors: np.ndarray, first_row: int) -> None:
        scores = np.concatenate([self.scores, self.queries @ vectors.T], axis=1)
        rows = np.concatenate([self.rows, np.broadcast_to(np.arange(first_row, first_row + len(vectors)),
                                                          (len(self.queries), len(vectors)))], axis=1)
        top = np.argpartition(-scores, self.k - 1, axis=1)[:, :self.k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.rows = np.take_along_axis(rows, top, axis=1)


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)]))


# --- the store process's memory ------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """The highest RSS of a process while the `with` block runs, sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return round(self.peak / 2**30, 2)


# --- measurements -------------------------------------------------------------------------------------


def index_sql(database: str, table: str, quantization: str, m: int, ef_construction: int) -> str:
    if quantization not in ("f64", "f32", "f16", "bf16", "i8", "b1"):
        raise ValueError(f"unknown quantization {quantization!r}")
    return (f"ALTER TABLE {sql.table_ref(database, table)} ADD INDEX {sql.quote_identifier(INDEX_NAME)} photo_embed "
            f"TYPE vector_similarity('hnsw', 'cosineDistance', {DIM}, '{quantization}', {int(m)}, "
            f"{int(ef_construction)})")


def searches(store: PhotoStore, queries: np.ndarray, **options: Any) -> tuple[list[list[int]], np.ndarray]:
    """Top-10 row numbers and latencies (ms) of each query, one after another."""
    found, latencies = [], []
    for query in queries:
        began = time.perf_counter()
        results = store.search(query, top_k=K, **options)
        latencies.append((time.perf_counter() - began) * 1000.0)
        found.append([int(r["photo_id"][1:]) for r in results])
    return found, np.asarray(latencies)


def rescored_searches(store: PhotoStore, queries: np.ndarray, width: int,
                      multiplier: int) -> tuple[list[list[int]], np.ndarray]:
    """As `searches`, with ClickHouse's rescoring: the index proposes `multiplier` x k candidates and their
    exact distances order them (what a coarse quantization needs; PhotoStore does not ask for it)."""
    text, params = sql.search_sql(store.dialect, store.database, store.table)
    settings = {**store.dialect.search_settings(K, exact=False, width=width), "vector_search_with_rescoring": 1,
                "vector_search_index_fetch_multiplier": multiplier}
    found, latencies = [], []
    for query in queries:
        began = time.perf_counter()
        rows = store.connection.query("search", text, {**params, "q": query.tolist(), "k": K}, settings).result_rows
        latencies.append((time.perf_counter() - began) * 1000.0)
        found.append([int(photo["photo_id"][1:]) for photo in search_rows(rows, with_vector=False)])
    return found, np.asarray(latencies)


def latency(latencies: np.ndarray) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2)}


def best_width(rows: Sequence[dict[str, Any]], goal: float = RECALL_GOAL) -> dict[str, Any] | None:
    """The fastest (lowest p50) search width whose recall@10 reaches the goal."""
    good = [row for row in rows if row["recall_at_10"] >= goal]
    return min(good, key=lambda row: row["p50_ms"]) if good else None


def load(store: PhotoStore, stream: ClusteredStream, size: int, truth: RunningTopK, chunk: int = 50_000,
         batch: int = 5_000) -> dict[str, Any]:
    """Generate, insert and fold into the ground truth `size` rows, a chunk at a time."""
    inserting = 0.0
    began = time.perf_counter()
    for index, first in enumerate(range(0, size, chunk)):
        vectors = stream.chunk(index, min(chunk, size - first))
        truth.add(vectors, first)
        for start in range(0, len(vectors), batch):
            part = vectors[start:start + batch]
            photos = [PhotoRecord(photo_id=f"p{first + start + i:08d}", photo_image_url=f"https://img/{first + start + i}.jpg")
                      for i in range(len(part))]
            t0 = time.perf_counter()
            store.insert_photos(photos, part)
            inserting += time.perf_counter() - t0
        progress(f"{first + len(vectors):,} / {size:,} rows in ({(first + len(vectors)) / inserting:,.0f} rows/s)")
    return {"insert_rows_per_s": round(size / inserting), "load_s": round(time.perf_counter() - began, 1)}


def run(url: str, pid: int, size: int, *, queries: int = 200, exact_queries: int = 10, widths: Sequence[int],
        quantizations: Sequence[str] = QUANTIZATIONS, m: int = 16, ef_construction: int = 64, seed: int = 7,
        rescore_multiplier: int = 0,
        budget_s: float = 35 * 60, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    started = clock()
    stream = ClusteredStream(seed)
    query_vectors = stream.queries(queries)
    truth = RunningTopK(query_vectors)
    store = PhotoStore(url, table=f"bench_quant_{size}", query_timeout=4 * 3600, exact_below=0)
    store.ensure_table(DIM, MODEL)
    out: dict[str, Any] = {"rows": size, "dim": DIM, "k": K, "queries": queries, "widths": list(widths),
                           "hnsw_m": m, "hnsw_ef_construction": ef_construction, "recall_goal": RECALL_GOAL,
                           "time_budget_s": budget_s}
    with PeakRss(pid) as peak:
        out.update(load(store, stream, size, truth))
    out["peak_rss_gib_loading"] = peak.gib
    progress("merging the parts into one (OPTIMIZE FINAL)")
    t0 = time.perf_counter()
    store.connection.command("merge", f"OPTIMIZE TABLE {sql.table_ref(store.database, store.table)} FINAL")
    out["merge_s"] = round(time.perf_counter() - t0, 1)

    progress(f"{exact_queries} exact searches (the baseline)")
    found, times = searches(store, query_vectors[:exact_queries], exact=True)
    out["exact"] = {**latency(times), "recall_at_10": round(recall_at_k(found, truth.rows[:exact_queries]), 4),
                    "queries": exact_queries}
    out["quantizations"] = []
    last_build = 0.0
    for quantization in quantizations:
        row: dict[str, Any] = {"quantization": quantization}
        left = budget_s - (clock() - started)
        if last_build and last_build * 1.2 > left:
            row["skipped"] = f"the last build took {last_build:.0f} s and {left:.0f} s of the budget were left"
            progress(f"{quantization}: skipped ({row['skipped']})")
            out["quantizations"].append(row)
            continue
        progress(f"{quantization}: building the index (M={m}, ef_construction={ef_construction})")
        with PeakRss(pid) as peak:
            t0 = time.perf_counter()
            store.connection.command("index creation", index_sql(store.database, store.table, quantization, m,
                                                                 ef_construction))
            store.connection.command("index build", f"ALTER TABLE {sql.table_ref(store.database, store.table)} "
                                     f"MATERIALIZE INDEX {sql.quote_identifier(INDEX_NAME)}",
                                     settings={"mutations_sync": 2})
            last_build = time.perf_counter() - t0
        row.update({"index_build_s": round(last_build, 1), "index_build_rows_per_s": round(size / last_build),
                    "index_status": store.index_status()["status"], "peak_rss_gib_building": peak.gib,
                    "index_used_by_search": INDEX_NAME in store.explain_search(query_vectors[0], K)})
        progress(f"{quantization}: built in {last_build:.0f} s; searching at widths {list(widths)}")
        # The first search loads the index into the server's cache: timed apart, then a few to warm up.
        _, cold = searches(store, query_vectors[:1], exact=False)
        row["first_search_ms"] = round(float(cold[0]), 1)
        searches(store, query_vectors[1:6], exact=False)
        row["widths"] = []
        with PeakRss(pid) as peak:
            for width in widths:
                found, times = searches(store, query_vectors, exact=False, search_width=width)
                point = {"width": width, **latency(times), "recall_at_10": round(recall_at_k(found, truth.rows), 4)}
                row["widths"].append(point)
                progress(f"{quantization} width {width}: p50 {point['p50_ms']} ms, recall@10 {point['recall_at_10']}")
            if rescore_multiplier and quantization != "f32":
                row["rescored"] = []
                for width in widths:
                    found, times = rescored_searches(store, query_vectors, width, rescore_multiplier)
                    point = {"width": width, **latency(times),
                             "recall_at_10": round(recall_at_k(found, truth.rows), 4)}
                    row["rescored"].append(point)
                    progress(f"{quantization}+rescoring x{rescore_multiplier} width {width}: "
                             f"p50 {point['p50_ms']} ms, recall@10 {point['recall_at_10']}")
        row["peak_rss_gib_searching"] = peak.gib
        row["best_at_recall_goal"] = best_width(row["widths"])
        if row.get("rescored"):
            row["best_rescored_at_recall_goal"] = best_width(row["rescored"])
        out["quantizations"].append(row)
        store.drop_index()
    out["wall_s"] = round(clock() - started, 1)
    store.close()
    return out


# --- output ---------------------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> Path:
    """recall@10 against p50 latency, one line per quantization, each point labelled with its width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    series = [(row.get("widths") or [], f"{row['quantization']} (build {row.get('index_build_s', 0):.0f} s)", "-")
              for row in report["quantizations"]]
    series += [(row["rescored"], f"{row['quantization']} + rescoring", "--")
               for row in report["quantizations"] if row.get("rescored")]
    for points, label, style in series:
        if not points:
            continue
        xs = [p["p50_ms"] for p in points]
        ys = [p["recall_at_10"] for p in points]
        axes.plot(xs, ys, marker="o", linestyle=style, label=label)
        for x, y, p in zip(xs, ys, points):
            axes.annotate(str(p["width"]), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.axhline(report["recall_goal"], color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("p50 latency (ms)")
    axes.set_ylabel("recall@10")
    axes.set_title(f"{report['rows']:,} clustered {report['dim']}-d vectors: HNSW quantizations")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def print_table(report: dict[str, Any]) -> None:
    print(f"\n== {report['rows']:,} clustered rows: insert {report['insert_rows_per_s']:,} rows/s, "
          f"merge {report['merge_s']} s, exact p50 {report['exact']['p50_ms']} ms, "
          f"peak RSS loading {report['peak_rss_gib_loading']} GiB ==")
    print(f"{'quant':<6}{'build s':>9}{'width':>7}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}{'RSS GiB':>9}")
    for row in report["quantizations"]:
        if "skipped" in row:
            print(f"{row['quantization']:<6} skipped: {row['skipped']}")
            continue
        for name, points in ((row["quantization"], row["widths"]), (row["quantization"] + "+r", row.get("rescored", []))):
            for point in points:
                print(f"{name:<6}{row['index_build_s']:>9.0f}{point['width']:>7}{point['p50_ms']:>9.2f}"
                      f"{point['p99_ms']:>9.2f}{point['recall_at_10']:>11.4f}{row['peak_rss_gib_building']:>9.2f}")
