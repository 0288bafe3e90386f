"""bench/search.py on the tiny model, quick: every measurement is taken over the real services (store,
embedder, gateway as processes), and the record carries the p50/p99 figures, throughput and goals."""
from __future__ import annotations

import json

import pytest


def test_the_search_bench_measures_every_path(tiny_model_dir, tmp_path, capsys):
    from bench.search import main

    output = tmp_path / "search-test.json"
    assert main(["--photos", "300", "--queries", "10", "--model", str(tiny_model_dir), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Headline: a new text takes" in printed and "queries/s" in printed
    record = json.loads(output.read_text())
    measurements = record["measurements"]
    single = ("embedder", "store", "sequence", "gateway_uncached", "gateway_repeated", "gateway_repeated_no_cache",
              "gateway_next_page", "seed")
    assert set(measurements) == {*single, "gateway_c8", "gateway_c32", "mode_vector", "mode_lexical", "mode_hybrid"}
    for mode in ("vector", "lexical", "hybrid"):
        assert 0 < measurements[f"mode_{mode}"]["extra"]["p50_ms"] <= measurements[f"mode_{mode}"]["extra"]["p99_ms"]
    for name in single:
        assert measurements[name]["items"] == 10
        assert 0 < measurements[name]["extra"]["p50_ms"] <= measurements[name]["extra"]["p99_ms"]
    # The uncached run's every text reached the embedder (10 measured, 3 warm-ups); each repeated run's only its
    # first warm-up; "Load more" only the first pages (its pages 2 are the text vector cache's).
    assert measurements["gateway_uncached"]["extra"]["embedder_texts"] == 13
    assert measurements["gateway_repeated"]["extra"]["embedder_texts"] == 1
    assert measurements["gateway_repeated_no_cache"]["extra"]["embedder_texts"] == 1
    assert measurements["gateway_next_page"]["extra"]["embedder_texts"] == 10
    assert record["headline"]["repeated_embedder_texts"] == 1 and "A repeated text:" in printed
    for name in ("gateway_uncached", "gateway_repeated", "gateway_repeated_no_cache", "gateway_next_page"):
        assert measurements[name]["extra"]["store_ms_p50_ms"] > 0
    # A kept answer skips the store's search; no-cache does not: the store's share shows it.
    assert measurements["gateway_repeated"]["extra"]["store_ms_p50_ms"] < \
        measurements["gateway_repeated_no_cache"]["extra"]["store_ms_p50_ms"]
    headline = record["headline"]
    assert headline["gateway_overhead_p50_ms"] == pytest.approx(
        measurements["gateway_uncached"]["extra"]["p50_ms"] - measurements["sequence"]["extra"]["p50_ms"], abs=0.02)
    assert measurements["gateway_c32"]["items"] == 128 and measurements["gateway_c32"]["extra"]["errors"] == 0
    assert headline["errors_at_32"] == 0 and headline["queries_per_second"]["c8"] > 0
    assert set(record["goals_met"]) == {"gateway_overhead_p50_ms", "repeated_p50_ms", "errors_at_32"}
    assert record["settings"]["photos"] == 300
