"""The active record's SQL and the table resolution, on a recording connection (no server)."""
from __future__ import annotations

import pytest

from services.photostore import PhotoStore
from services.photostore.active import (
    RECHECK_S,
    ActiveRecord,
    create_active_sql,
    missing_ids_sql,
    read_active_sql,
    record_from_row,
    reembed_table_name,
)
from services.photostore.errors import StoreError


class Connection:
    """Answers the active-record lookup with `rows` (or an unknown-table error), counting the lookups."""

    def __init__(self, rows=None, unknown=False):
        self.rows, self.unknown, self.reads = rows or [], unknown, 0

    def read_rows(self, action, sql, params=None):
        assert action == "active table lookup"
        self.reads += 1
        if self.unknown:
            raise StoreError("Table default.lib_active does not exist. (UNKNOWN_TABLE)")
        return self.rows

    def close(self):
        pass


def _store(connection) -> PhotoStore:
    store = PhotoStore("http://127.0.0.1:9", "lib")
    store.connection = connection
    return store


ROW = ("lib_0a1b2c3d", "model-b", "", 32, "lib", "", "", 1_700_000_000.5)


def test_sql_names_the_tables_and_binds_nothing_by_formatting():
    assert create_active_sql("db", "lib").startswith("CREATE TABLE IF NOT EXISTS `db`.`lib_active`")
    assert "ENGINE = MergeTree" in create_active_sql("db", "lib")
    assert read_active_sql("db", "lib") == (
        "SELECT table, model, text_model, dim, previous, previous_model, previous_text_model, "
        "toFloat64(switched_at) FROM `db`.`lib_active` ORDER BY switched_at DESC LIMIT 1")
    assert missing_ids_sql("db", "lib", "lib_0a1b2c3d") == (
        "SELECT DISTINCT photo_id FROM `db`.`lib` WHERE photo_id NOT IN (SELECT photo_id FROM "
        "`db`.`lib_0a1b2c3d`) ORDER BY photo_id")
    with pytest.raises(ValueError):
        missing_ids_sql("db", "lib", "x`; DROP TABLE lib; --")


def test_the_new_table_is_named_by_the_models_the_same_each_time():
    name = reembed_table_name("photos", "google/siglip2-base-patch16-512")
    assert name == reembed_table_name("photos", "google/siglip2-base-patch16-512", None)
    assert name != reembed_table_name("photos", "google/siglip2-base-patch16-512", "some/text-tower")
    assert name.startswith("photos_") and len(name) == len("photos_") + 8


def test_a_row_becomes_a_record_with_empty_strings_as_none():
    record = record_from_row(ROW)
    assert record == ActiveRecord("lib_0a1b2c3d", "model-b", None, 32, "lib", None, None, 1_700_000_000.5)
    assert record.embed_options() == {"model": "model-b"}
    assert ActiveRecord("lib").embed_options() == {}


def test_no_record_table_means_the_base_table():
    store = _store(Connection(unknown=True))
    assert store.table == "lib" and store.active_record() == ActiveRecord("lib")


def test_the_record_is_read_at_most_every_recheck_and_a_change_resets_the_caches(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("services.photostore.active.time.monotonic", lambda: clock[0])
    connection = Connection(rows=[])
    store = _store(connection)
    assert store.table == "lib"
    store._info, store._rows_seen = {"dim": 64}, (1.0, 5)
    connection.rows = [ROW]
    clock[0] += RECHECK_S / 2
    assert store.table == "lib" and connection.reads == 1  # trusted for RECHECK_S
    clock[0] += RECHECK_S
    assert store.table == "lib_0a1b2c3d" and connection.reads == 2
    assert store._info is None and store._rows_seen is None  # the old table's dim and row count are gone
    assert store.base_table == "lib"


def test_a_bound_client_ignores_the_record_and_is_kept():
    store = _store(Connection(rows=[ROW]))
    old = store.for_table("lib")
    assert old.table == "lib" and old.pinned and not store.pinned
    assert store.for_table("lib") is old and old.for_table("lib") is old
    assert store.table == "lib_0a1b2c3d"
    with pytest.raises(ValueError):
        store.for_table("not a name")


def test_a_store_briefly_away_keeps_the_table_last_seen(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("services.photostore.active.time.monotonic", lambda: clock[0])
    connection = Connection(rows=[ROW])
    store = _store(connection)
    assert store.table == "lib_0a1b2c3d"

    def away(*_args, **_kwargs):
        raise StoreError("The store at http://127.0.0.1:9 cannot be reached")

    connection.read_rows = away
    clock[0] += 10
    assert store.table == "lib_0a1b2c3d"


def test_a_store_away_before_any_record_means_the_base_table_until_it_answers():
    connection = Connection(rows=[ROW])

    def away(*_args, **_kwargs):
        raise StoreError("The store at http://127.0.0.1:9 cannot be reached")

    read = connection.read_rows
    connection.read_rows = away
    store = _store(connection)
    assert store.table == "lib"
    connection.read_rows = read
    assert store.table == "lib_0a1b2c3d"  # not kept: read again as soon as the store answers
