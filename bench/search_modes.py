"""The query modes in `make bench-search`: vector, lexical and hybrid through the gateway, timed in turns.

bench/search.py gives its photos descriptions from `description` (8 words each from a vocabulary of 200:
its query words and 180 others, so each word is in about 4% of the photos and a three-word query
matches about a tenth of the library: many rows to score by BM25, as a common word does). Here each
mode answers new texts at one client, one query of each mode in turn, so that the machine's drift
weighs on all three alike; each text is new (no cache helps) and every answer is checked to be a full
page in the mode asked. The hybrid p50 over the vector p50 is the cost of adding words to a query.
"""
from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np

from bench.common import Measurement
from bench.ingest import _percentile

MODES = ("vector", "lexical", "hybrid")
GOAL_HYBRID_OVER_VECTOR = 1.3
_OTHER_WORDS = [f"{stem}{suffix}" for stem in ("stone", "light", "wave", "cloud", "field", "glass", "paper",
                                               "metal", "grass", "smoke", "dust", "frost")
                for suffix in ("", "s", "y", "ed", "er", "ing", "like", "work", "side", "fall", "line", "wood",
                               "less", "ish", "scape")]


def vocabulary(query_words: list[str]) -> list[str]:
    """The query words and 180 others: the words descriptions are made of."""
    return list(query_words) + _OTHER_WORDS[:180]


def description(index: int, words: list[str], rng: np.random.Generator) -> str:
    """Eight words of `words` for photo `index` (drawn from `rng`, so a run is repeatable)."""
    return " ".join(rng.choice(words, 8, replace=False))


def measure_modes(api_url: str, make_texts, queries: int, top_k: int) -> dict[str, Measurement]:
    """`queries` new texts in each mode at one client, in turns; p50/p99 and the gateway's store_ms p50."""
    texts = {mode: make_texts(queries, seed=20 + number) for number, mode in enumerate(MODES)}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    store_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    matched = {mode: 0 for mode in MODES}
    with httpx.Client(base_url=api_url, timeout=120) as client:
        def ask(mode: str, text: str) -> dict[str, Any]:
            response = client.post("/v1/search", json={"text": text, "top_k": top_k, "mode": mode})
            response.raise_for_status()
            body = response.json()
            assert body["mode"] == mode and len(body["results"]) == top_k, (mode, text, body.get("notices"))
            return body

        for number in range(3):  # warm-up, not measured
            for mode in MODES:
                ask(mode, f"a warm-up beach query {mode} {number}")
        for index in range(queries):
            for mode in MODES:
                started = time.perf_counter()
                body = ask(mode, texts[mode][index])
                times[mode].append(time.perf_counter() - started)
                store_ms[mode].append(body["timings"]["store_ms"])
                matched[mode] += sum(bool((r.get("match") or {}).get("words")) for r in body["results"])
    results = {}
    for mode in MODES:
        values = times[mode]
        extra = {"p50_ms": round(_percentile(values, 50) * 1000, 2), "p99_ms": round(_percentile(values, 99) * 1000, 2),
                 "store_ms_p50_ms": round(float(np.median(store_ms[mode])), 2),
                 "results_with_matched_words": matched[mode], "mode": mode}
        print(f"  {mode}: p50 {extra['p50_ms']:.1f} ms, p99 {extra['p99_ms']:.1f} ms", flush=True)
        results[f"mode_{mode}"] = Measurement(f"gateway, mode {mode}, concurrency 1, each text new", len(values),
                                              sum(values), values, extra)
    return results


def headline(results: dict[str, Measurement]) -> dict[str, Any]:
    """The modes' p50 and p99, and hybrid's p50 over vector's (the goal: at most 1.3)."""
    p50 = {mode: results[f"mode_{mode}"].extra["p50_ms"] for mode in MODES}
    ratio = p50["hybrid"] / p50["vector"]
    return {"modes_p50_ms": p50, "modes_p99_ms": {mode: results[f"mode_{mode}"].extra["p99_ms"] for mode in MODES},
            "modes_store_p50_ms": {mode: results[f"mode_{mode}"].extra["store_ms_p50_ms"] for mode in MODES},
            "hybrid_over_vector_p50": round(ratio, 3),
            "hybrid_over_vector_goal_met": ratio <= GOAL_HYBRID_OVER_VECTOR}
