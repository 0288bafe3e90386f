"""The large-folder memory benchmark at a small size: real gateway, Redis and store, the real ingest command."""
from __future__ import annotations

import json

from bench import folder_memory


def test_the_benchmark_reports_peak_rss_per_size_the_ratio_and_the_idle_baseline(tmp_path, capsys):
    figures = folder_memory.main(["--files", "100,500", "--out", "folder-memory-test", "--results-dir", str(tmp_path)])
    written = json.loads((tmp_path / "folder-memory-test.json").read_text())
    assert [run["files"] for run in written["runs"]] == [100, 500]
    for run in written["runs"]:
        assert f"Submitted {run['files']} photos" in run["summary"]
        assert run["command_peak_mib"] > 10 and run["gateway_peak_mib"] > 10 and run["seconds"] > 0
    assert written["baseline"]["command_mib"] > 10 and written["baseline"]["gateway_mib"] > 10
    assert written["ratio_command"] == figures["ratio_command"] > 0
    out = capsys.readouterr().out
    assert "command peak MiB" in out and "500 files" in out and "idle (baseline)" in out
