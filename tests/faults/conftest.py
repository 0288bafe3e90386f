"""Fixtures of the fault suite: the generated photos and their HTTP server (shared by every fault),
and the table of outcomes printed at the end of the run (also written to test-output/faults/)."""
from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tools.sample_data import serve, write_sample_set

PHOTOS = 300
OUTCOMES: list[dict] = []
COLUMNS = ("fault", "outcome", "held", "expected", "rows", "distinct", "503s", "recover_s", "done_s")


@pytest.fixture(scope="session")
def photo_set(tmp_path_factory):
    """(TSV path, photos in it): generated JPEGs served by a local HTTP server for the whole run."""
    folder = tmp_path_factory.mktemp("fault-photos")
    server, _ = serve(folder)
    tsv = write_sample_set(folder, PHOTOS, f"http://127.0.0.1:{server.server_address[1]}")
    yield tsv, PHOTOS
    server.shutdown()


def outcome_table() -> str:
    rows = [COLUMNS] + [tuple(str(outcome.get(column, "")) for column in COLUMNS) for outcome in OUTCOMES]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES:
        return
    table = outcome_table()
    terminalreporter.write_sep("=", "faults (held: batches in workers' hands at the fault; recover_s: fault "
                                    "over -> a batch done and a search answered; done_s: fault over -> job done)")
    terminalreporter.write_line(table)
    out = ROOT / "test-output" / "faults"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.txt").write_text(table + "\n")
