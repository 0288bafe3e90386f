"""The store client's SQL and options without a server: DDL, reads, identifiers, checks before the server."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.config import CommonSettings
from services.common.errors import BadRequest
from services.common.schemas import METADATA_FIELDS
from services.common.vectors import collapse_near_duplicates
from services.photostore import PhotoStore, columns, connection
from services.photostore import sql as store
from services.photostore.filters import filter_sql


def test_delete_and_row_count_bind_their_values():
    assert store.delete_sql("db", "t") == "DELETE FROM `db`.`t` WHERE photo_id IN {photo_ids:Array(String)}"
    assert "FINAL" not in store.row_count_sql("db", "t")


def test_collapse_keeps_the_best_of_each_group_of_near_duplicates():
    base = np.eye(4, dtype=np.float32)
    near = base[0] + 0.01 * base[1]
    vectors = np.stack([base[0], near, base[1], base[2], near * 3])
    assert collapse_near_duplicates(vectors, 0.99) == [0, 2, 3]
    assert collapse_near_duplicates(vectors, 1.01) == [0, 1, 2, 3, 4]
    assert collapse_near_duplicates(np.zeros((0, 4), np.float32), 0.9) == []


def test_store_options_come_from_the_environment_through_the_settings(monkeypatch):
    monkeypatch.setenv("STORE_EXACT_BELOW", "1234")
    monkeypatch.setenv("STORE_SEARCH_WIDTH", "64")
    monkeypatch.setenv("STORE_INDEX_TYPE", "SCANN")
    photo_store = PhotoStore("http://127.0.0.1:1", **CommonSettings(_env_file=None).store_options())
    assert (photo_store.exact_below, photo_store.search_width, photo_store.index_type) == (1234, 64, "SCANN")
    assert PhotoStore("http://127.0.0.1:1", exact_below=0).exact_below == 0
    monkeypatch.setenv("STORE_EXACT_BELOW", "many")
    with pytest.raises(ValueError, match="STORE_EXACT_BELOW"):
        CommonSettings(_env_file=None)


def test_the_store_itself_never_reads_the_environment(monkeypatch):
    monkeypatch.setenv("STORE_EXACT_BELOW", "1234")
    monkeypatch.setenv("STORE_SEARCH_WIDTH", "64")
    monkeypatch.setenv("STORE_INDEX_TYPE", "SCANN")
    photo_store = PhotoStore("http://127.0.0.1:1")
    assert (photo_store.exact_below, photo_store.search_width, photo_store.index_type) == (50_000, 256, "MSTG")
    with pytest.raises(ValueError, match="STORE_SEARCH_WIDTH"):
        PhotoStore("http://127.0.0.1:1", search_width=-1)


@pytest.mark.parametrize("options, words", [
    ({"top_k": 0}, "top_k"), ({"top_k": True}, "top_k"), ({"offset": -1}, "offset"),
    ({"top_k": 9000, "offset": 2000}, "offset + top_k"), ({"collapse": 2.0}, "collapse"),
    ({"search_width": 0}, "search_width"),
])
def test_search_options_are_checked_before_the_server_is_asked(options, words):
    photo_store = PhotoStore("http://127.0.0.1:1", connect_timeout=0.2)
    with pytest.raises(BadRequest) as caught:
        photo_store.search(np.ones(4, np.float32), **options)
    assert words in caught.value.message


def test_table_ddl_has_the_seed_columns_metadata_and_the_length_constraint():
    sql = store.create_table_sql("default", "photos", 512)
    for column in ("id UInt64", "photo_id String", "photo_image_url String", "photo_embed Array(Float32)",
                   "inserted_at DateTime64(3)"):
        assert column in sql
    for field in METADATA_FIELDS:
        assert f"\n    {field} " in sql
    assert "CONSTRAINT vector_len CHECK length(photo_embed) = 512" in sql
    assert "ENGINE = ReplacingMergeTree(inserted_at)" in sql
    assert sql.endswith("ORDER BY photo_id")


def test_every_metadata_field_has_an_explicit_type():
    assert set(columns.METADATA_TYPES) == set(METADATA_FIELDS)


@pytest.mark.parametrize("dim", [0, -1, "512", 1.5, True])
def test_a_bad_dimension_is_refused(dim):
    with pytest.raises(ValueError):
        store.create_table_sql("default", "photos", dim)


@pytest.mark.parametrize("name", ["photos; DROP TABLE x", "a`b", "", "1photos", "a.b"])
def test_identifiers_are_validated(name):
    with pytest.raises(ValueError):
        store.quote_identifier(name)
    with pytest.raises(ValueError):
        PhotoStore("http://127.0.0.1:1", table=name)


def test_reads_bind_their_values():
    assert store.photo_sql("db", "t").endswith("WHERE photo_id = {photo_id:String} LIMIT 1")
    assert "photo_embed" in store.photo_sql("db", "t", with_vector=True)
    assert "IN {photo_ids:Array(String)}" in store.existing_ids_sql("db", "t")
    assert "FINAL" in store.count_sql("db", "t") and "FINAL" in store.random_photo_sql("db", "t")
    where, params = filter_sql({"photo_location_country": ["Japan", "Peru' OR 1=1"]})
    drawn = store.random_photo_sql("db", "t", where)
    assert "FINAL WHERE photo_location_country IN {f0:Array(String)} ORDER BY rand() LIMIT 1" in drawn
    assert "Peru" not in drawn and params == {"f0": ["Japan", "Peru' OR 1=1"]}


def test_database_comes_from_the_url_and_the_password_stays_out_of_messages():
    photo_store = PhotoStore("http://user:s3cret@127.0.0.1:1/images?compress=false", table="photos")
    assert photo_store.database == "images"
    assert "s3cret" not in photo_store.safe_url and "user:***@127.0.0.1:1" in photo_store.safe_url
    assert PhotoStore("http://127.0.0.1:1").database == "default"
    with pytest.raises(ValueError):
        PhotoStore("redis://127.0.0.1:6379/0")


def test_stable_ids_depend_only_on_the_photo_id():
    assert store.stable_id("abc") == store.stable_id("abc")
    assert store.stable_id("abc") != store.stable_id("abd")
    assert 0 <= store.stable_id("abc") < 2**64


def test_server_message_is_trimmed_to_the_servers_sentence():
    raw = ("Received ClickHouse exception, code: 60, server response: Code: 60. DB::Exception: Table "
           "default.nope does not exist. (UNKNOWN_TABLE) (version 26.9.1.1 (official build)) (for url http://x)")
    assert connection.server_message(Exception(raw)) == \
        "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE)"

