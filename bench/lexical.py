"""Word search quality and speed: recall@10 of keyword-tagged photos in lexical, vector and hybrid mode,
and a word query's p50 against a vector query's p50 in the same run.

Builds the sample set (tools/sample_data.py: pictures, photos.tsv and keywords.tsv), reads it through the
ingest command's reader (tools/sources.py, so the keywords arrive as `make ingest` would bring them),
and inserts it into the real embedded store (a subprocess) with random unit vectors: no model runs,
so the vector ranking is chance by construction, the floor a real CLIP ranking starts from. For every
keyword that tags 1-50 photos, the keyword is the query and its photos are the relevant ones:
recall@10 = |top 10 ∩ tagged| / min(10, tagged). Hybrid is reciprocal rank fusion (k = 60) of the
lexical and vector rankings, 50 deep each, as the gateway fuses them.

Then the table is padded to `--timing-rows` rows (copies of the sample rows under new ids, new random
vectors) and each keyword is timed, 3 rounds, as a lexical query (the BM25 statistics cached for the
data version; with the cosine score to a vector; the statistics read afresh) and as an exact vector
query, the kinds interleaved query by query so that a busy moment weighs on each alike.

Writes bench/results/lexical-<photos>.json and prints a table.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import format_table, machine_info, offline_run, write_results
from bench.store import store_server
from services.photostore import PhotoStore
from services.photostore.lexical import lexical_search, lexical_status, parse_query
from tools.sample_data import write_sample_set
from tools.sources import open_source

DIM = 512
RRF_K = 60
DEPTH = 50
ROUNDS = 3


def unit(seed: int, count: int = 1) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def text_vector(keyword: str) -> np.ndarray:
    """The keyword's stand-in text vector: random, seeded by the word (no model here)."""
    return unit(int.from_bytes(hashlib.sha256(keyword.encode()).digest()[:4], "big"))[0]


def rrf(*rankings: list[str], k: int = RRF_K) -> list[str]:
    scores: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, photo_id in enumerate(ranking, start=1):
            scores[photo_id] += 1.0 / (k + rank)
    return sorted(scores, key=lambda photo_id: (-scores[photo_id], photo_id))


def recall(found: list[str], relevant: set[str]) -> float:
    return len(set(found[:10]) & relevant) / min(10, len(relevant))


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000, help="sample photos (default 2000)")
    parser.add_argument("--timing-rows", type=int, default=25_000, help="rows the latency is measured at")
    parser.add_argument("--quick", action="store_true", help="400 photos, 5,000 rows")
    parser.add_argument("--output", help="write the JSON record here instead of bench/results/")
    args = parser.parse_args(argv)
    offline_run()
    photos, rows = (400, 5000) if args.quick else (args.photos, max(args.timing_rows, args.photos))
    with tempfile.TemporaryDirectory(prefix="bench-lexical-") as scratch:
        folder = Path(scratch)
        records = list(open_source(write_sample_set(folder / "sample", photos, "http://127.0.0.1:9")))
        tags: dict[str, set[str]] = defaultdict(set)
        for record in records:
            for keyword in filter(None, record.photo_keywords.split(",")):
                tags[keyword].add(record.photo_id)
        queries = sorted(k for k, ids in tags.items() if 1 <= len(ids) <= 50)
        (folder / "store").mkdir()
        with store_server(folder / "store") as url, PhotoStore(url, "lexical_bench") as store:
            store.ensure_table(DIM, "bench/random-unit-vectors")
            store.insert_photos(records, unit(1, len(records)))
            quality = measure_quality(store, queries, tags)
            timing = measure_speed(store, records, queries, rows)
            status = lexical_status(store)
    summary = {mode: round(statistics.mean(q[mode] for q in quality), 3) for mode in ("lexical", "vector", "hybrid")}
    payload: dict[str, Any] = {
        "photos": photos, "keywords_measured": len(queries), "recall_at_10": summary, "timing": timing,
        "lexical_index": status, "per_keyword": quality, "machine": machine_info(),
        "note": "vectors are random unit vectors (no model): the vector recall is chance by construction",
    }
    path = write_results(f"lexical-{photos}", payload, output=args.output)
    print(format_table([[mode, summary[mode]] for mode in summary], ["mode", f"mean recall@10 ({len(queries)} keywords)"]))
    print()
    print(format_table([[name, value["rows"], value["p50_ms"], value["p90_ms"]] for name, value in timing.items()],
                       ["query", "rows", "p50 ms", "p90 ms"]))
    print(f"\nindex: {status['index']}; written to {path}")
    return 0


def measure_quality(store: PhotoStore, queries: list[str], tags: dict[str, set[str]]) -> list[dict[str, Any]]:
    results = []
    for keyword in queries:
        lexical = [r["photo_id"] for r in lexical_search(store, parse_query(keyword), top_k=DEPTH)]
        vector = [r["photo_id"] for r in store.search(text_vector(keyword), top_k=DEPTH, exact=True)]
        relevant = tags[keyword]
        results.append({"keyword": keyword, "tagged": len(relevant), "lexical": recall(lexical, relevant),
                        "vector": recall(vector, relevant), "hybrid": recall(rrf(lexical, vector), relevant)})
    return results


def measure_speed(store: PhotoStore, records: list, queries: list[str], rows: int) -> dict[str, dict[str, Any]]:
    """p50 of each kind of query over the keyword queries, at `rows` rows."""
    extra = rows - len(records)
    for start in range(0, extra, 5000):
        batch = [r.model_copy(update={"photo_id": f"pad{start + i}-{r.photo_id}"})
                 for i, r in enumerate(records * (1 + 5000 // len(records)))][:min(5000, extra - start)]
        store.insert_photos(batch, unit(1000 + start, len(batch)))
    store.connection.command("merge", f"OPTIMIZE TABLE `{store.database}`.`{store.table}` FINAL")
    parsed = [parse_query(keyword) for keyword in queries]
    for query in parsed[:5]:  # warm-up: caches, the server's first reads
        lexical_search(store, query, top_k=10)

    def afresh(query) -> None:
        store.__dict__.pop("_lexical_state", None)
        lexical_search(store, query, top_k=10)
    kinds = {
        "lexical (statistics cached)": lambda q, k: lexical_search(store, q, top_k=10),
        "lexical + cosine score": lambda q, k: lexical_search(store, q, top_k=10, vector=text_vector(k)),
        "lexical (statistics read afresh)": lambda q, k: afresh(q),
        "vector (exact)": lambda q, k: store.search(text_vector(k), top_k=10, exact=True),
    }
    # Interleaved, query by query, so that a busy moment of a shared machine weighs on every kind alike.
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(ROUNDS):
        for query, keyword in zip(parsed, queries):
            for name, run in kinds.items():
                times[name].append(timed(lambda run=run, q=query, k=keyword: run(q, k)))
    return {name: {"rows": rows, "queries": len(times[name]), "p50_ms": p50(times[name]),
                   "p90_ms": round(float(np.percentile(times[name], 90)), 2)} for name in kinds}


if __name__ == "__main__":
    raise SystemExit(main())
