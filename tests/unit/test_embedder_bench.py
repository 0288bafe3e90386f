"""bench/common.py and bench/embedder.py: timing, tables and the JSON record, end to end on the tiny
model (the real run uses the b32 shapes and takes minutes)."""
from __future__ import annotations

import json

from bench.common import Measurement, format_table, measure, write_results


def test_measure_counts_items_runs_and_cpu_time():
    calls = []
    result = measure("work", lambda: calls.append(1) or 3, min_runs=4, warmup=2, note="x")
    assert len(calls) == 6 and result.items == 12 and len(result.per_run) == 4
    assert result.rate > 0 and result.cpu_seconds is not None
    record = result.as_dict()
    assert record["per_second"] > 0 and record["extra"] == {"note": "x"}


def test_table_aligns_numbers_and_labels():
    text = format_table([("seed", 1, 0.5), ("embedder", 128, 1234.5)], ["path", "batch", "rate"])
    lines = text.splitlines()
    assert lines[0].split() == ["path", "batch", "rate"]
    assert lines[2].endswith("0.50") and lines[3].endswith("1,234.5")
    assert len({len(line) for line in lines[1:]}) == 1


def test_results_are_written_as_json(tmp_path):
    path = write_results("thing-cpu", {"rows": [Measurement("a", 1, 0.5).as_dict()]}, folder=tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "thing-cpu.json" and record["benchmark"] == "thing-cpu"
    assert record["rows"][0]["per_second"] == 2.0


def test_the_embedder_bench_runs_and_reports_a_ratio(tiny_model_dir, tmp_path, capsys):
    from bench.embedder import main

    output = tmp_path / "embedder-test.json"
    argv = ["--model", str(tiny_model_dir), "--batches", "1,4", "--items", "4", "--seed-items", "2",
            "--device", "cpu", "--dtype", "float32", "--output", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed loop" in printed and "Headline" in printed and "x seed" in printed
    record = json.loads(output.read_text())
    assert record["headline"]["images_ratio_to_seed"] > 0
    kinds = {(row["kind"], row["batch"], row["label"]) for row in record["embedder"]}
    assert {("image", 1, "embedder"), ("image", 4, "embedder"), ("text", 4, "embedder")} <= kinds
    assert record["machine"]["cores"] >= 1 and record["model"]["dtype"] == "float32"
