"""bench/ingest.py end to end on the tiny model: the article's loop and the real stack ingest the same
photos, and the record says how many each stored and the ratio (the real run uses the b32 shapes)."""
from __future__ import annotations

import json


def test_the_ingest_bench_runs_both_paths_and_reports_a_ratio(tiny_model_dir, tmp_path, capsys):
    from bench.ingest import main

    output = tmp_path / "ingest-test.json"
    assert main(["--photos", "6", "--concurrency", "1", "--model", str(tiny_model_dir),
                 "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Headline: the system ingests 200 px photos" in printed and "x seed" in printed
    record = json.loads(output.read_text())
    assert record["seed_loop"]["items"] == 6 and record["system"]["items"] == 6
    assert record["system"]["job"].startswith("Job ") and "6" in record["system"]["job"]
    assert record["headline"]["ratio_to_seed"] > 0
    # 12 queries x 3 timed rounds each way, after a round that checks each returns all 6 photos.
    assert record["seed_query"]["items"] == 36 and record["system_query"]["items"] == 36
    assert record["headline"]["query_median_ms"]["system"] > 0 and "text query" in printed
    assert record["settings"] == {"photos": 6, "worker_concurrency": 1, "photo_width": 200,
                                  "embedder_dtype": "auto", "model": str(tiny_model_dir)}
