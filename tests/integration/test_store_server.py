"""The embedded store, started as its own process, driven by an unmodified clickhouse-connect client."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

clickhouse_connect = pytest.importorskip("clickhouse_connect")
from clickhouse_connect.driver.exceptions import DatabaseError  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DIM = 512


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StoreProcess:
    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.store", "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]

    def start(self) -> StoreProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), cwd=PROJECT_ROOT, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"store exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=1).text == "Ok.\n":
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"store did not answer /ping: {self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def client(self, **kwargs):
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, interface="http", **kwargs)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    server = StoreProcess(root / "data", root / "store.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(store):
    client = store.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((2000, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def create_photos_table(client, name: str) -> None:
    client.command(
        f"CREATE TABLE {name} (id UInt32, photo_id String, vector Array(Float32), "
        f"CONSTRAINT vector_len CHECK length(vector) = {DIM}) ENGINE = MergeTree ORDER BY id"
    )


@pytest.fixture(scope="module")
def photos(client, vectors):
    create_photos_table(client, "photos")
    rows = [[i, f"photo-{i}", vectors[i].tolist()] for i in range(len(vectors))]
    summary = client.insert("photos", rows, column_names=["id", "photo_id", "vector"])  # default: lz4
    assert summary.written_rows == len(rows)
    return "photos"


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


def current_max_threads(client, **kwargs) -> tuple[str, int]:
    return client.query("SELECT value, changed FROM system.settings WHERE name = 'max_threads'", **kwargs).result_rows[0]


def test_set_in_one_session_does_not_leak_into_another(store):
    first, second = store.client(), store.client()
    sessionless = store.client(autogenerate_session_id=False)
    default = current_max_threads(second)
    first.command("SET max_threads = 1")
    assert current_max_threads(first) == ("1", 1)
    assert current_max_threads(second) == default
    assert current_max_threads(sessionless) == default
    # Per-query settings apply to that query only, on top of the session's own.
    assert current_max_threads(first, settings={"max_threads": 3}) == ("3", 1)
    assert current_max_threads(first) == ("1", 1)
    # A SET without a session changes nothing for later queries.
    sessionless.command("SET max_threads = 1")
    assert current_max_threads(sessionless) == default
    for each in (first, second, sessionless):
        each.close()


def test_session_keeps_temporary_tables_and_database_to_itself(store):
    owner, other = store.client(), store.client()
    owner.command("CREATE TEMPORARY TABLE scratch (x UInt8)")
    owner.command("INSERT INTO scratch VALUES (1), (2)")
    assert owner.command("SELECT count() FROM scratch") == 2
    with pytest.raises(DatabaseError, match="scratch"):
        other.command("SELECT count() FROM scratch")
    owner.command("CREATE DATABASE IF NOT EXISTS elsewhere")
    owner.command("USE elsewhere")
    assert owner.command("SELECT currentDatabase()") == "elsewhere"
    assert other.command("SELECT currentDatabase()") == "default"
    owner.close()
    other.close()


def test_restart_keeps_data_and_second_instance_is_refused(tmp_path, vectors):
    server = StoreProcess(tmp_path / "data", tmp_path / "store.log").start()
    try:
        writer = server.client()
        create_photos_table(writer, "kept")
        writer.insert("kept", [[i, f"k{i}", vectors[i].tolist()] for i in range(100)],
                      column_names=["id", "photo_id", "vector"])
        writer.close()

        rival = StoreProcess(tmp_path / "data", tmp_path / "rival.log")
        finished = subprocess.run(rival.command(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
        assert finished.returncode != 0
        assert "already using the data folder" in finished.stderr
    finally:
        assert server.stop(signal.SIGTERM) == 0

    server.start()
    try:
        reader = server.client()
        assert reader.command("SELECT count() FROM kept") == 100
        assert reader.query("SELECT photo_id FROM kept WHERE id = 99").result_rows == [("k99",)]
        reader.close()
    finally:
        server.stop(signal.SIGINT)


def test_credentials_and_body_limit_when_configured(tmp_path, vectors):
    env = {"STORE_USER": "ingest", "STORE_PASSWORD": "s3cret", "STORE_MAX_BODY_BYTES": "65536"}
    server = StoreProcess(tmp_path / "data", tmp_path / "store.log", env=env).start()
    try:
        with pytest.raises(DatabaseError, match="Authentication failed"):
            server.client(username="ingest", password="wrong")
        good = server.client(username="ingest", password="s3cret", compress=False)
        assert good.command("SELECT 2") == 2
        create_photos_table(good, "limited")
        with pytest.raises(DatabaseError, match="STORE_MAX_BODY_BYTES"):
            good.insert("limited", [[i, "p", vectors[i].tolist()] for i in range(100)],
                        column_names=["id", "photo_id", "vector"])
        assert good.command("SELECT count() FROM limited") == 0
        good.close()
    finally:
        server.stop()


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
