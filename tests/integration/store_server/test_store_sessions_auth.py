"""The embedded store's sessions, credentials, body limit, data-folder lock and restarts."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.integration.store_server.harness import PROJECT_ROOT, StoreProcess, create_photos_table


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
