"""The clickhouse-connect calls the project makes, checked against one server (see conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

DIM = 512
ROWS = 1000
COLUMNS = ["id", "photo_id", "vector"]
TYPES = ["UInt32", "String", "Array(Float32)"]


def unit_vectors(count: int, seed: int = 3) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def create_photos(client, table: str, engine: str = "MergeTree ORDER BY id") -> None:
    client.command(
        f"CREATE TABLE {table} (id UInt32, photo_id String, vector Array(Float32), "
        f"CONSTRAINT vector_len CHECK length(vector) = {DIM}) ENGINE = {engine}")


def insert_photos(client, table: str, ids: range, vectors: np.ndarray):
    """Column-oriented, with the types given, as the store module inserts."""
    columns = [list(ids), [f"photo-{i}" for i in ids], [vectors[i].tolist() for i in ids]]
    return client.insert(table, columns, column_names=COLUMNS, column_type_names=TYPES, column_oriented=True)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(ROWS)


@pytest.fixture(scope="module")
def photos(client, vectors) -> str:
    create_photos(client, "photos")
    summary = insert_photos(client, "photos", range(ROWS), vectors)  # the default: lz4
    assert summary.written_rows == ROWS
    return "photos"


def test_handshake(client):
    assert client.command("SELECT 1") == 1
    assert client.server_version.count(".") >= 2
    assert client.query("SELECT version()").result_rows[0][0]


def test_batch_insert_with_default_compression(client, photos):
    assert client.command(f"SELECT count() FROM {photos}") == ROWS
    assert client.query(f"SELECT photo_id, length(vector) FROM {photos} WHERE id = 7").result_rows == [("photo-7", DIM)]


@pytest.mark.parametrize("compression", ["gzip", "zstd", False])
def test_batch_insert_with_other_compressions(connect, vectors, compression):
    writer = connect(compress=compression)
    table = f"photos_{compression or 'plain'}"
    create_photos(writer, table)
    insert_photos(writer, table, range(200), vectors)
    insert_photos(writer, table, range(200, 400), vectors)
    assert writer.command(f"SELECT count() FROM {table}") == 400
    stored = writer.query(f"SELECT vector FROM {table} WHERE id = 399").result_rows[0][0]
    assert np.allclose(np.asarray(stored, dtype=np.float32), vectors[399], atol=1e-7)


def test_length_constraint_refuses_a_short_vector(client, photos):
    with pytest.raises(DatabaseError, match="vector_len"):
        client.insert(photos, [[99999], ["short"], [[0.1, 0.2]]], column_names=COLUMNS, column_type_names=TYPES,
                      column_oriented=True)
    assert client.command(f"SELECT count() FROM {photos} WHERE id = 99999") == 0


def test_top_k_by_cosine_distance_with_a_bound_512_float_vector(client, photos, vectors):
    result = client.query(
        f"SELECT photo_id, cosineDistance(vector, {{q:Array(Float32)}}) AS distance FROM {photos} "
        "WHERE id >= {min_id:UInt32} ORDER BY distance LIMIT {k:UInt32}",
        parameters={"q": vectors[42].tolist(), "min_id": 0, "k": 10},
    )
    rows = result.result_rows
    assert len(rows) == 10
    assert rows[0][0] == "photo-42" and rows[0][1] == pytest.approx(0.0, abs=1e-5)
    exact = 1.0 - vectors @ vectors[42]
    assert [row[0] for row in rows] == [f"photo-{i}" for i in np.argsort(exact, kind="stable")[:10]]
    assert [row[1] for row in rows] == pytest.approx(sorted(exact)[:10], abs=1e-5)


def test_per_query_settings_and_bound_arrays(client, photos):
    rows = client.query(
        f"SELECT id FROM {photos} WHERE photo_id IN {{ids:Array(String)}} ORDER BY id",
        parameters={"ids": ["photo-3", "photo-1", "nope' OR 1=1 --"]}, settings={"max_threads": 1},
    ).result_rows
    assert rows == [(1,), (3,)]
    assert client.command(f"SELECT count() FROM {photos} WHERE photo_id = {{p:String}}",
                          parameters={"p": "photo-1' OR 1=1 --"}) == 0


def test_replacing_merge_tree_final_and_lightweight_delete(client, vectors):
    create_photos(client, "replaced", "ReplacingMergeTree ORDER BY photo_id")
    insert_photos(client, "replaced", range(10), vectors)
    insert_photos(client, "replaced", range(5, 15), vectors)  # 5..9 written twice
    assert client.command("SELECT count() FROM replaced FINAL") == 15
    client.command("DELETE FROM replaced WHERE photo_id IN {ids:Array(String)}",
                   parameters={"ids": ["photo-0", "photo-9"]})
    assert client.command("SELECT count() FROM replaced FINAL") == 13


def test_errors_are_database_errors_with_the_server_code(client):
    with pytest.raises(DatabaseError) as syntax:
        client.query("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError) as unknown:
        client.command("SELECT count() FROM no_such_table_here")
    assert unknown.value.code == 60
    with pytest.raises(DatabaseError):
        client.query("SELECT {x:UInt8}", parameters={"x": "not a number"})
    assert client.command("SELECT 5") == 5  # the client is still usable


def _max_threads(client, **kwargs) -> tuple[str, int]:
    return client.query("SELECT value, changed FROM system.settings WHERE name = 'max_threads'",
                        **kwargs).result_rows[0]


def test_set_stays_in_its_session(connect):
    first = connect(autogenerate_session_id=True)
    second = connect(autogenerate_session_id=True)
    sessionless = connect()
    default = _max_threads(second)
    first.command("SET max_threads = 1")
    assert _max_threads(first) == ("1", 1)
    assert _max_threads(second) == default
    assert _max_threads(sessionless) == default
    assert _max_threads(first, settings={"max_threads": 3}) == ("3", 1)  # this query only
    assert _max_threads(first) == ("1", 1)
    sessionless.command("SET max_threads = 1")  # without a session: this statement only
    assert _max_threads(sessionless) == default


def test_temporary_table_belongs_to_its_session(connect):
    owner = connect(autogenerate_session_id=True)
    other = connect(autogenerate_session_id=True)
    owner.command("CREATE TEMPORARY TABLE scratch (x UInt8)")
    owner.command("INSERT INTO scratch VALUES (1), (2)")
    assert owner.command("SELECT count() FROM scratch") == 2
    with pytest.raises(DatabaseError):
        other.command("SELECT count() FROM scratch")


def test_large_results_three_ways(client):
    """300k rows, read with query_np, query_df and raw_stream."""
    client.command("CREATE TABLE large (id UInt32, photo_id String, vector Array(Float32)) "
                   "ENGINE = MergeTree ORDER BY id")
    client.command("INSERT INTO large SELECT number, toString(number), arrayMap(i -> toFloat32(number + i), range(16)) "
                   "FROM numbers(300000)")
    array = client.query_np("SELECT id, vector[16] AS last FROM large ORDER BY id")
    assert array.shape == (300000,) and int(array[-1][0]) == 299999 and float(array[-1][1]) == 299999 + 15
    frame = client.query_df("SELECT id, photo_id FROM large ORDER BY id")
    assert len(frame) == 300000 and frame["photo_id"].iloc[-1] == "299999" and frame["id"].is_monotonic_increasing
    lines = 0
    with client.raw_stream("SELECT id, photo_id FROM large ORDER BY id", fmt="TabSeparated") as stream:
        tail = b""
        for chunk in stream:
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-32:]
    assert lines == 300000 and tail.endswith(b"299999\t299999\n")
    rows = client.query("SELECT id, vector FROM large WHERE id % 1000 = 0 ORDER BY id").result_rows
    assert len(rows) == 300 and rows[-1][1][0] == pytest.approx(299000.0)


def test_empty_results_keep_their_columns(client, photos):
    result = client.query(f"SELECT id, photo_id FROM {photos} WHERE id > 10000000")
    assert result.result_rows == [] and list(result.column_names) == ["id", "photo_id"]
    assert client.query_df(f"SELECT id, vector FROM {photos} WHERE 0").empty
    assert client.query(f"SELECT id FROM {photos} WHERE id = {{id:UInt32}}", parameters={"id": 10**8}).column_names == (
        "id",)


@pytest.mark.server_may_differ(reason="an error after the first result bytes is tagged only by ClickHouse 25.11+; "
                                      "older servers and MyScale append plain text the client may not detect")
def test_error_after_the_result_began(client):
    with pytest.raises(DatabaseError, match="boom"):
        client.query("SELECT throwIf(number = 250000, 'boom') AS x FROM numbers(300000)")


@pytest.mark.server_may_differ(reason="vector_similarity is ClickHouse 25.8+; MyScale uses ADD VECTOR INDEX ... MSTG")
def test_vector_similarity_index_answers_top_k(client, vectors):
    create_photos(client, "indexed")
    client.command(f"ALTER TABLE indexed ADD INDEX emb vector TYPE vector_similarity('hnsw', 'cosineDistance', {DIM})")
    insert_photos(client, "indexed", range(300), vectors)
    client.command("ALTER TABLE indexed MATERIALIZE INDEX emb", settings={"mutations_sync": 2})
    rows = client.query(
        "SELECT id FROM indexed ORDER BY cosineDistance(vector, {q:Array(Float32)}) LIMIT 3",
        parameters={"q": vectors[17].tolist()}, settings={"hnsw_candidate_list_size_for_search": 64},
    ).result_rows
    assert rows[0] == (17,)
