"""The store server's /metrics: queries by kind and outcome, their latency, rows and bytes read and written."""
from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.embedded_store.metrics import query_kind
from services.embedded_store.protocol import Statement


def scrape(store) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"http://127.0.0.1:{store.port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_queries_are_counted_by_kind_and_outcome_with_rows_and_bytes(store, client):
    client.command("CREATE TABLE metrics_t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
    summary = client.insert("metrics_t", [[i, f"n{i}"] for i in range(500)], column_names=["id", "name"])
    assert summary.written_rows == 500
    assert client.query("SELECT count() FROM metrics_t").result_rows == [(500,)]
    assert len(client.query("SELECT id, name FROM metrics_t").result_rows) == 500
    with pytest.raises(Exception, match="UNKNOWN_TABLE|Unknown table"):
        client.query("SELECT * FROM no_such_table")

    samples = scrape(store)
    assert samples[("store_queries_total", (("kind", "insert"), ("outcome", "ok")))] == 1
    assert samples[("store_queries_total", (("kind", "read"), ("outcome", "error")))] == 1
    assert samples[("store_queries_total", (("kind", "read"), ("outcome", "ok")))] >= 2
    assert samples[("store_queries_total", (("kind", "other"), ("outcome", "ok")))] >= 1
    assert samples[("store_rows_total", (("direction", "written"),))] == 500
    assert samples[("store_bytes_total", (("direction", "written"),))] > 0
    assert samples[("store_rows_total", (("direction", "read"),))] >= 500
    reads = samples[("store_query_duration_seconds_count", (("kind", "read"),))]
    assert reads == samples[("store_queries_total", (("kind", "read"), ("outcome", "ok")))] + 1
    # Scraping and pinging are not queries.
    httpx.get(f"http://127.0.0.1:{store.port}/ping")
    assert scrape(store)[("store_query_duration_seconds_count", (("kind", "read"),))] == reads


def test_query_kinds():
    assert query_kind(Statement("WITH 1 AS x SELECT x")) == "read"
    assert query_kind(Statement("/* batch */ INSERT INTO t FORMAT Native")) == "insert"
    assert query_kind(Statement("ALTER TABLE t ADD INDEX i x TYPE minmax")) == "other"
    assert query_kind(None) == "other"
