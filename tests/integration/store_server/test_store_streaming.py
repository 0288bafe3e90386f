"""The embedded store's streamed results: bounded memory, errors after the first bytes, cancellation,
response compression."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.integration.store_server.harness import peak_rss_mib


def test_large_result_is_streamed_with_bounded_server_memory(store):
    """300k rows of 64 floats (77 MiB as Native): read three ways while the server's peak RSS
    stays well under the size of the result (the whole result in memory cost ~350 MiB more)."""
    writer = store.client()
    writer.command("CREATE TABLE big (id UInt32, photo_id String, vector Array(Float32)) ENGINE = MergeTree ORDER BY id")
    writer.command("INSERT INTO big SELECT number, toString(number), arrayMap(i -> toFloat32(number + i), range(64)) "
                   "FROM numbers(300000)")
    try:
        Path(f"/proc/{store.process.pid}/clear_refs").write_text("5")  # resets the peak RSS
    except OSError:
        pytest.skip("cannot reset the server's peak RSS here")
    before = peak_rss_mib(store.process.pid)

    received = 0
    with writer.raw_stream("SELECT * FROM big ORDER BY id", fmt="Native") as stream:
        for chunk in stream:
            received += len(chunk)
    assert received > 75 * 2**20
    array = writer.query_np("SELECT id, vector[64] AS last FROM big ORDER BY id")
    assert array.shape == (300000,) and int(array[-1][0]) == 299999 and float(array[-1][1]) == 299999 + 63
    frame = writer.query_df("SELECT id, photo_id FROM big ORDER BY id")
    assert len(frame) == 300000 and frame["photo_id"].iloc[123456] == "123456"
    growth = peak_rss_mib(store.process.pid) - before
    print(f"server peak RSS growth while serving 300k-row results: {growth:.0f} MiB")
    assert growth < 120, f"the server's peak RSS grew by {growth:.0f} MiB for a 77 MiB result"
    writer.command("DROP TABLE big")
    writer.close()


def test_error_after_the_result_began_raises_database_error(store, client):
    with pytest.raises(DatabaseError, match="boom"):
        client.query("SELECT throwIf(number = 250000, 'boom') AS x FROM numbers(300000)")
    assert client.command("SELECT 3") == 3  # the handle went back to the pool in a usable state


def test_client_leaving_mid_result_cancels_the_query(store):
    reader = store.client()
    with reader.raw_stream("SELECT number, toString(number) FROM numbers(50000000)", fmt="TabSeparated") as stream:
        first = next(iter(stream))
    assert first.startswith(b"0\t0\n")
    reader.close()
    checker = store.client()
    deadline = time.monotonic() + 20
    while checker.command("SELECT count() FROM system.processes WHERE query LIKE '%numbers(50000000)%' "
                          "AND query NOT LIKE '%system.processes%'") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert time.monotonic() < deadline, "the abandoned query kept running"
    assert checker.command("SELECT 4") == 4
    checker.close()


def test_response_compression_when_the_client_asks(store):
    import lz4.frame

    url = f"http://127.0.0.1:{store.port}/"
    sql = "SELECT number FROM numbers(300000)"
    asked = httpx.get(url, params={"query": sql, "enable_http_compression": "1"},
                      headers={"Accept-Encoding": "lz4"})
    assert asked.headers["content-encoding"] == "lz4"
    assert asked.headers["transfer-encoding"] == "chunked"  # 2 MiB of TSV: streamed
    plain = lz4.frame.decompress(asked.content)
    assert plain.count(b"\n") == 300000 and plain.endswith(b"299999\n")
    assert len(asked.content) < len(plain)
    small = httpx.get(url, params={"query": "SELECT 42", "enable_http_compression": "1"},
                      headers={"Accept-Encoding": "gzip"})
    assert small.headers["content-encoding"] == "gzip" and small.text == "42\n"  # httpx decodes gzip
    unasked = httpx.get(url, params={"query": "SELECT 42"}, headers={"Accept-Encoding": "lz4"})
    assert "content-encoding" not in unasked.headers and unasked.text == "42\n"


def test_error_within_the_first_mib_is_a_status_and_the_handle_is_clean(store):
    # A client that waits for the end of the query (clickhouse-connect's `query` does) has been sent
    # nothing yet: the error is the status with X-ClickHouse-Exception-Code, in every format, and the
    # failed query's partial output never reaches the next query on that handle.
    failing = "SELECT number, throwIf(number = 50000) FROM numbers(100000) SETTINGS max_block_size = 1000"
    with httpx.Client(base_url=f"http://127.0.0.1:{store.port}", timeout=30) as http:
        for fmt in ("TabSeparated", "Native", "JSON", "Arrow", "CSVWithNames"):
            answer = http.post("/", params={"wait_end_of_query": "1"}, content=f"{failing} FORMAT {fmt}".encode())
            assert answer.status_code == 500 and answer.headers["X-ClickHouse-Exception-Code"] == "395"
            assert answer.text.startswith("Code: 395. DB::Exception:") and "X-ClickHouse-Format" not in answer.headers
            for _ in range(3):  # enough to meet every pooled handle
                assert http.post("/", content=b"SELECT 'clean'").text == "clean\n"
