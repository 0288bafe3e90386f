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
        return [sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(self.port),
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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


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


def test_rows_acknowledged_before_sigterm_survive_a_restart(tmp_path):
    """Inserts run until the server is told to stop: every insert that was acknowledged is there
    after a restart (graceful shutdown lets running requests finish, then closes chDB)."""
    import threading

    server = StoreProcess(tmp_path / "data", tmp_path / "store.log").start()
    setup = server.client()
    setup.command("CREATE TABLE flushed (id UInt32, batch UInt32) ENGINE = MergeTree ORDER BY id")
    setup.close()
    acknowledged: list[int] = []
    stop = threading.Event()

    def keep_inserting() -> None:
        client = server.client()
        batch = 0
        while not stop.is_set():
            try:
                client.insert("flushed", [[batch * 1000 + i, batch] for i in range(1000)], column_names=["id", "batch"])
            except Exception:  # noqa: BLE001 - the server went away mid-request: not acknowledged
                return
            acknowledged.append(batch)
            batch += 1

    thread = threading.Thread(target=keep_inserting)
    thread.start()
    while len(acknowledged) < 5:
        time.sleep(0.02)
    assert server.stop(signal.SIGTERM) == 0
    stop.set()
    thread.join(timeout=30)

    server.start()
    try:
        reader = server.client()
        batches = {row[0] for row in reader.query("SELECT DISTINCT batch FROM flushed").result_rows}
        assert set(acknowledged) <= batches
        # At most the one insert in flight at the signal may be there without its acknowledgement.
        assert len(batches - set(acknowledged)) <= 1
        assert reader.command("SELECT count() FROM flushed") == 1000 * len(batches)
        reader.close()
    finally:
        server.stop()
