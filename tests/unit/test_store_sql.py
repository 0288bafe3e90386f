"""The store module's SQL, per dialect, without a server: shape, bound values, refusals."""
from __future__ import annotations

import re

import numpy as np
import pytest

from services import photostore as store
from services.common.errors import BadRequest
from services.common.schemas import METADATA_FIELDS
from services.photostore import CLICKHOUSE, MYSCALE, InvalidFilter, PhotoStore

# Values that must reach the server only as bound parameters.
SECRET_VALUES = ["Sp'ain; DROP TABLE x", "needle-text", 1234.5, "photo-to-skip"]


def _filters():
    return {
        "photo_location_country": "Sp'ain; DROP TABLE x",
        "photo_width": {"gte": 1234.5, "lt": 9999},
        "photo_description": {"contains": "needle-text"},
        "photographer_username": ["alice", "bob"],
    }


@pytest.mark.parametrize("dialect, function", [(CLICKHOUSE, "cosineDistance"), (MYSCALE, "distance")])
def test_search_sql_uses_the_dialects_distance_with_a_bound_vector(dialect, function):
    sql, params = store.search_sql(dialect, "default", "photos")
    assert f"{function}(photo_embed, {{q:Array(Float32)}}) AS dist" in sql
    # The shape vector indexes recognise: no FINAL, nothing but the distance in the ORDER BY.
    assert "FROM `default`.`photos`\n" in sql and "FINAL" not in sql
    assert sql.rstrip().endswith("ORDER BY dist ASC\nLIMIT {k:UInt32}")
    assert "WHERE" not in sql and "photo_embed," not in sql.split("AS dist")[0].split(function)[0]
    assert params == {}


def test_search_sql_can_return_the_vectors_for_collapsing():
    sql, _ = store.search_sql(CLICKHOUSE, "default", "photos", with_vector=True)
    assert ", photo_embed, cosineDistance(" in sql


def test_clickhouse_index_sql():
    add = CLICKHOUSE.add_index_sql("db", "photos", 512)
    assert add == ("ALTER TABLE `db`.`photos` ADD INDEX IF NOT EXISTS `photo_embed_index` photo_embed "
                   "TYPE vector_similarity('hnsw', 'cosineDistance', 512)")
    assert CLICKHOUSE.build_index_sql("db", "photos") == \
        "ALTER TABLE `db`.`photos` MATERIALIZE INDEX `photo_embed_index`"
    assert CLICKHOUSE.wait_index_sql("db", "photos") is None
    assert CLICKHOUSE.drop_index_sql("db", "photos") == "ALTER TABLE `db`.`photos` DROP INDEX IF EXISTS `photo_embed_index`"
    assert "system.data_skipping_indices" in CLICKHOUSE.index_status_sql()
    assert set(re.findall(r"\{(\w+):", CLICKHOUSE.index_status_sql())) == {"db", "table", "name"}
    assert set(re.findall(r"\{(\w+):", store.index_mutations_sql())) == {"db", "table", "name"}
    with pytest.raises(ValueError):
        CLICKHOUSE.add_index_sql("db", "photos", "512")


@pytest.mark.parametrize("index_type", ["MSTG", "SCANN", "HNSWFLAT"])
def test_myscale_index_sql(index_type):
    add = MYSCALE.add_index_sql("db", "photos", 512, index_type)
    assert add == (f"ALTER TABLE `db`.`photos` ADD VECTOR INDEX `photo_embed_index` photo_embed "
                   f"TYPE {index_type}('metric_type=Cosine')")
    assert MYSCALE.build_index_sql("db", "photos") is None
    assert MYSCALE.wait_index_sql("db", "photos") == "SYSTEM WAIT BUILDING VECTOR INDICES `db`.`photos`"
    assert MYSCALE.drop_index_sql("db", "photos") == "ALTER TABLE `db`.`photos` DROP VECTOR INDEX `photo_embed_index`"
    status = MYSCALE.index_status_sql()
    assert "FROM system.vector_indices" in status and "latest_fail_reason" in status and "status" in status
    assert set(re.findall(r"\{(\w+):", status)) == {"db", "table", "name"}


def test_an_index_type_that_is_not_a_word_is_refused():
    with pytest.raises(ValueError):
        MYSCALE.add_index_sql("db", "photos", 512, "MSTG('x'); DROP TABLE y")
    with pytest.raises(ValueError):
        PhotoStore("http://127.0.0.1:1", index_type="MSTG()")


def test_search_settings_choose_exact_or_indexed_and_lift_the_limit():
    assert CLICKHOUSE.search_settings(10, exact=True, width=64) == {"use_skip_indexes": 0}
    assert CLICKHOUSE.search_settings(10, exact=False, width=64) == {"hnsw_candidate_list_size_for_search": 64}
    assert CLICKHOUSE.search_settings(10, exact=False, width=None) == {}
    # Above ClickHouse's default max_limit_for_vector_search_queries (1000) the limit is raised, not refused.
    assert CLICKHOUSE.search_settings(5000, exact=False, width=None) == {"max_limit_for_vector_search_queries": 5000}
    # MyScale takes none of ClickHouse's settings (an unknown setting is an error there).
    assert MYSCALE.search_settings(5000, exact=True, width=64) == {}


def test_delete_and_row_count_bind_their_values():
    assert store.delete_sql("db", "t") == "DELETE FROM `db`.`t` WHERE photo_id IN {photo_ids:Array(String)}"
    assert "FINAL" not in store.row_count_sql("db", "t")


def test_collapse_keeps_the_best_of_each_group_of_near_duplicates():
    base = np.eye(4, dtype=np.float32)
    near = base[0] + 0.01 * base[1]
    vectors = np.stack([base[0], near, base[1], base[2], near * 3])
    assert store.collapse_near_duplicates(vectors, 0.99) == [0, 2, 3]
    assert store.collapse_near_duplicates(vectors, 1.01) == [0, 1, 2, 3, 4]
    assert store.collapse_near_duplicates(np.zeros((0, 4), np.float32), 0.9) == []


def test_store_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STORE_EXACT_BELOW", "1234")
    monkeypatch.setenv("STORE_SEARCH_WIDTH", "64")
    monkeypatch.setenv("STORE_INDEX_TYPE", "SCANN")
    photo_store = PhotoStore("http://127.0.0.1:1")
    assert (photo_store.exact_below, photo_store.search_width, photo_store.index_type) == (1234, 64, "SCANN")
    assert PhotoStore("http://127.0.0.1:1", exact_below=0).exact_below == 0
    monkeypatch.setenv("STORE_EXACT_BELOW", "many")
    with pytest.raises(ValueError, match="STORE_EXACT_BELOW"):
        PhotoStore("http://127.0.0.1:1")


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


@pytest.mark.parametrize("dialect", [CLICKHOUSE, MYSCALE])
def test_filter_values_never_appear_in_the_sql_text(dialect):
    sql, params = store.search_sql(dialect, "default", "photos", filters=_filters(),
                                   exclude_photo_id="photo-to-skip")
    for value in SECRET_VALUES:
        assert str(value) not in sql
    assert "alice" not in sql and "9999" not in sql
    values = list(params.values())
    for value in ("Sp'ain; DROP TABLE x", 1234.5, 9999.0, "needle-text", "photo-to-skip", ["alice", "bob"]):
        assert value in values
    # Every placeholder in the text has a value, and every value a placeholder (q and k bound by the caller).
    placeholders = set(re.findall(r"\{(\w+):", sql))
    assert placeholders == set(params) | {"q", "k"}


def test_filter_conditions_per_kind():
    conditions, params = store.filter_sql(_filters())
    assert "photo_location_country = {f0:String}" in conditions
    assert "photo_width >= {f1:Float64}" in conditions
    assert "photo_width < {f2:Float64}" in conditions
    assert "positionCaseInsensitiveUTF8(photo_description, {f3:String}) > 0" in conditions
    assert "photographer_username IN {f4:Array(String)}" in conditions
    assert params["f1"] == 1234.5 and params["f4"] == ["alice", "bob"]


@pytest.mark.parametrize("filters, words", [
    ({"id": 3}, "Cannot filter on 'id'"),
    ({"photo_embed": [1.0]}, "Cannot filter on 'photo_embed'"),
    ({"photo_width; DROP": 1}, "Cannot filter on"),
    ({"photo_width": {"between": 1}}, "Unknown filter operator 'between'"),
    ({"photo_width": {"contains": "1"}}, "'contains' works on text columns"),
    ({"photo_width": "wide"}, "needs a number"),
    ({"photo_width": True}, "needs a number"),
    ({"photo_location_city": 5}, "needs text"),
    ({"photo_location_city": []}, "non-empty list"),
    ({"photo_location_city": {}}, "has no operator"),
])
def test_bad_filters_are_refused_with_a_sentence(filters, words):
    with pytest.raises(InvalidFilter) as caught:
        store.filter_sql(filters)
    assert words in caught.value.message
    assert isinstance(caught.value, BadRequest) and caught.value.status_code == 422


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
    assert set(store.METADATA_TYPES) == set(METADATA_FIELDS)


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
    where, params = store.filter_sql({"photo_location_country": ["Japan", "Peru' OR 1=1"]})
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
    assert store.server_message(Exception(raw)) == \
        "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE)"

