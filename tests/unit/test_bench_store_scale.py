"""The million-photo bench's own arithmetic: chunked ground truth, recall, the chosen width, the chart."""
import numpy as np
import pytest

from bench import store_scale
from bench.store import exact_top_k


def test_the_running_top_k_over_chunks_equals_the_exact_top_k_over_everything():
    stream = store_scale.ClusteredStream(seed=3, clusters=20)
    queries = stream.queries(16)
    running = store_scale.RunningTopK(queries)
    chunks = [stream.chunk(i, n) for i, n in enumerate([700, 5, 1300])]
    first = 0
    for chunk in chunks:
        running.add(chunk, first)
        first += len(chunk)
    assert np.array_equal(running.rows, exact_top_k(np.concatenate(chunks), queries))
    # A chunk depends only on the seed and its number.
    assert np.array_equal(stream.chunk(1, 5), store_scale.ClusteredStream(seed=3, clusters=20).chunk(1, 5))


def test_recall_and_the_fastest_width_reaching_the_goal():
    truth = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]])
    found = [[9, 8, 7, 6, 5, 4, 3, 2, 1, 0], [10, 11, 12, 13, 14, 15, 16, 17, 99, 98]]
    assert store_scale.recall_at_k(found, truth) == pytest.approx(0.9)
    widths = [{"width": 16, "p50_ms": 5.0, "recall_at_10": 0.90}, {"width": 64, "p50_ms": 9.0, "recall_at_10": 0.96},
              {"width": 256, "p50_ms": 8.0, "recall_at_10": 0.97}]
    assert store_scale.best_width(widths)["width"] == 256
    assert store_scale.best_width(widths, goal=0.99) is None


def test_the_index_ddl_names_the_quantization_and_refuses_others():
    ddl = store_scale.index_sql("db", "photos", "i8", 16, 64)
    assert ddl.endswith("TYPE vector_similarity('hnsw', 'cosineDistance', 512, 'i8', 16, 64)")
    with pytest.raises(ValueError, match="quantization"):
        store_scale.index_sql("db", "photos", "int4'; DROP", 16, 64)


def test_the_chart_is_a_png_with_a_line_per_measured_quantization(tmp_path):
    report = {"rows": 20000, "dim": 512, "recall_goal": 0.95, "quantizations": [
        {"quantization": "bf16", "index_build_s": 12.0,
         "widths": [{"width": 16, "p50_ms": 4.1, "recall_at_10": 0.9}, {"width": 64, "p50_ms": 6.0, "recall_at_10": 0.99}],
         "rescored": [{"width": 16, "p50_ms": 5.0, "recall_at_10": 0.97}]},
        {"quantization": "f32", "skipped": "over the time budget"}]}
    path = store_scale.plot(report, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_the_peak_rss_of_a_process_is_sampled():
    import os

    with store_scale.PeakRss(os.getpid(), every=0.01) as peak:
        ballast = np.ones(20 * 2**20, dtype=np.uint8)  # 20 MiB touched
        assert ballast.sum() > 0
    assert peak.peak > 20 * 2**20 and peak.gib == round(peak.peak / 2**30, 2)
