"""The embedded store driven by an unmodified clickhouse-connect client: inserts, queries, bound values, errors,
concurrency."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.integration.store_server.harness import create_photos_table


def test_ping_and_handshake(store, client):
    assert httpx.get(f"http://127.0.0.1:{store.port}/ping").text == "Ok.\n"
    assert client.server_version.count(".") >= 2
    assert client.command("SELECT 1") == 1


def test_insert_with_default_compression_is_counted(client, photos):
    assert client.command(f"SELECT count() FROM {photos}") == 2000


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_insert_with_other_compressions(store, vectors, compression):
    writer = store.client(compress=compression)
    table = f"photos_{compression}"
    create_photos_table(writer, table)
    writer.insert(table, [[i, f"p{i}", vectors[i].tolist()] for i in range(300)],
                  column_names=["id", "photo_id", "vector"])
    assert writer.command(f"SELECT count() FROM {table}") == 300
    assert writer.query(f"SELECT photo_id FROM {table} WHERE id = 299").result_rows == [("p299",)]
    writer.close()


def test_top_k_by_cosine_distance_with_bound_vector(client, photos, vectors):
    result = client.query(
        f"SELECT photo_id, cosineDistance(vector, {{query:Array(Float32)}}) AS distance FROM {photos} "
        "WHERE id < {limit_id:UInt32} ORDER BY distance LIMIT {k:UInt32}",
        parameters={"query": vectors[42].tolist(), "limit_id": 2000, "k": 5},
    )
    assert len(result.result_rows) == 5
    assert result.result_rows[0][0] == "photo-42"
    assert result.result_rows[0][1] == pytest.approx(0.0, abs=1e-5)
    distances = [row[1] for row in result.result_rows]
    assert distances == sorted(distances)


def test_bound_string_is_a_value_not_sql(client, photos):
    result = client.query(f"SELECT count() FROM {photos} WHERE photo_id = {{pid:String}}",
                          parameters={"pid": "photo-1' OR 1=1 --"})
    assert result.result_rows == [(0,)]
    result = client.query(f"SELECT count() FROM {photos} WHERE photo_id = {{pid:String}}", parameters={"pid": "photo-1"})
    assert result.result_rows == [(1,)]


def test_query_np(client, photos, vectors):
    array = client.query_np(f"SELECT id, vector FROM {photos} ORDER BY id LIMIT 3")
    assert [int(row[0]) for row in array] == [0, 1, 2]
    assert np.allclose(np.asarray(array[1][1], dtype=np.float32), vectors[1], atol=1e-6)


def test_bad_sql_raises_database_error_with_server_message(client):
    with pytest.raises(DatabaseError) as raised:
        client.query("SELEC 1")
    assert "Syntax error" in str(raised.value)
    assert raised.value.code == 62


def test_unknown_table_raises_database_error(client):
    with pytest.raises(DatabaseError, match="no_such_table"):
        client.command("SELECT count() FROM no_such_table")


def test_constraint_violation_raises_database_error(client, photos):
    with pytest.raises(DatabaseError, match="vector_len"):
        client.insert(photos, [[99999, "short", [0.1, 0.2]]], column_names=["id", "photo_id", "vector"])
    assert client.command(f"SELECT count() FROM {photos} WHERE id = 99999") == 0


def test_concurrent_clients_get_their_own_answers(store, photos, vectors):
    """The gateway and several workers query at once; each must get the answer to its own query."""
    from concurrent.futures import ThreadPoolExecutor

    def nearest(index: int) -> str:
        reader = store.client()
        try:
            rows = reader.query(
                f"SELECT photo_id FROM {photos} ORDER BY cosineDistance(vector, {{query:Array(Float32)}}) LIMIT 1",
                parameters={"query": vectors[index].tolist()},
            ).result_rows
            return rows[0][0]
        finally:
            reader.close()

    indexes = list(range(0, 2000, 125))
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(nearest, indexes)) == [f"photo-{i}" for i in indexes]


def test_concurrent_writers_and_readers_lose_nothing(store):
    """Four writers insert distinct rows in small batches while two readers count and search;
    every row is there at the end, exactly once, and no reader ever sees the count go down."""
    from concurrent.futures import ThreadPoolExecutor

    setup = store.client()
    setup.command("CREATE TABLE busy (id UInt32, writer UInt8, vector Array(Float32)) ENGINE = MergeTree ORDER BY id")
    writers, batches, rows = 4, 12, 250
    done = False

    def write(writer_id: int) -> int:
        client = store.client(compress=["lz4", "zstd", "gzip", False][writer_id])
        rng = np.random.default_rng(writer_id)
        try:
            for batch in range(batches):
                start = (writer_id * batches + batch) * rows
                data = [[start + i, writer_id, rng.random(8, dtype=np.float32).tolist()] for i in range(rows)]
                client.insert("busy", data, column_names=["id", "writer", "vector"])
            return batches * rows
        finally:
            client.close()

    def read(_: int) -> int:
        client = store.client()
        seen = [0]
        try:
            while not done:
                count = client.command("SELECT count() FROM busy")
                assert count >= seen[-1]
                seen.append(count)
                client.query("SELECT id FROM busy ORDER BY cosineDistance(vector, {q:Array(Float32)}) LIMIT 5",
                             parameters={"q": [0.5] * 8})
            return len(seen)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=writers + 2) as pool:
        readers = [pool.submit(read, i) for i in range(2)]
        written = sum(pool.map(write, range(writers)))
        done = True
        reads = sum(reader.result() for reader in readers)
    total = writers * batches * rows
    assert written == total and reads > 2
    assert setup.query("SELECT count(), uniqExact(id), min(id), max(id) FROM busy").result_rows == [
        (total, total, 0, total - 1)]
    assert setup.query("SELECT writer, count() FROM busy GROUP BY writer ORDER BY writer").result_rows == [
        (w, batches * rows) for w in range(writers)]
    setup.command("DROP TABLE busy")
    setup.close()
