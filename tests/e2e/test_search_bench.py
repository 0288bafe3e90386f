"""bench/search.py on the tiny model, quick: every measurement is taken over the real services (store,
embedder, gateway as processes), and the record carries the p50/p99 figures, throughput and goals."""
from __future__ import annotations

import json


def test_the_search_bench_measures_every_path(tiny_model_dir, tmp_path, capsys):
    from bench.search import main

    output = tmp_path / "search-test.json"
    assert main(["--photos", "300", "--queries", "10", "--model", str(tiny_model_dir), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Headline: the gateway adds" in printed and "queries/s" in printed
    record = json.loads(output.read_text())
    measurements = record["measurements"]
    assert set(measurements) == {"embedder", "store", "gateway_uncached", "gateway_repeated", "gateway_c8",
                                 "gateway_c32", "seed"}
    for name in ("embedder", "store", "gateway_uncached", "gateway_repeated", "seed"):
        assert measurements[name]["items"] == 10
        assert 0 < measurements[name]["extra"]["p50_ms"] <= measurements[name]["extra"]["p99_ms"]
    # The uncached run's every text reached the embedder (10 measured, 3 warm-ups); the repeated one's only
    # the first warm-up: its measured queries were all the gateway's text vector cache.
    assert measurements["gateway_uncached"]["extra"]["embedder_texts"] == 13
    assert measurements["gateway_repeated"]["extra"]["embedder_texts"] == 1
    assert record["headline"]["repeated_embedder_texts"] == 1 and "A repeated text:" in printed
    for name in ("gateway_uncached", "gateway_repeated"):
        assert measurements[name]["extra"]["store_ms_p50_ms"] > 0
    assert measurements["gateway_c32"]["items"] == 128 and measurements["gateway_c32"]["extra"]["errors"] == 0
    assert record["headline"]["errors_at_32"] == 0 and record["headline"]["queries_per_second"]["c8"] > 0
    assert set(record["goals_met"]) == {"gateway_overhead_p50_ms", "repeated_p50_ms", "errors_at_32"}
    assert record["settings"]["photos"] == 300
