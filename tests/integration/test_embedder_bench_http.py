"""bench/embedder.py --http: the same requests to the embedder run by uvicorn in a subprocess."""
from __future__ import annotations

import json


def test_the_bench_measures_the_service_over_http(tiny_model_dir, tmp_path, capsys):
    from bench.embedder import main

    output = tmp_path / "embedder-http.json"
    assert main(["--model", str(tiny_model_dir), "--batches", "4", "--items", "4", "--seed-items", "2",
                 "--device", "cpu", "--http", "--output", str(output)]) == 0
    assert "embedder over HTTP" in capsys.readouterr().out
    rows = json.loads(output.read_text())["embedder"]
    over_http = [row for row in rows if row["label"] == "embedder over HTTP"]
    # At least two batches, so that two requests are in flight: 2 x 4 items.
    assert len(over_http) == 1 and over_http[0]["items"] == 8 and over_http[0]["per_second"] > 0
