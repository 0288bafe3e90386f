"""What differs between servers, per dialect, without a server: distance, index DDL, index status, settings."""
from __future__ import annotations

import re

import pytest

from services.photostore import PhotoStore, sql
from services.photostore.dialects import CLICKHOUSE, MYSCALE, ClickHouseDialect, MyScaleDialect, dialect_for


@pytest.mark.parametrize("dialect, function", [(CLICKHOUSE, "cosineDistance"), (MYSCALE, "distance")])
def test_search_sql_uses_the_dialects_distance_with_a_bound_vector(dialect, function):
    text, params = sql.search_sql(dialect, "default", "photos")
    assert f"{function}(photo_embed, {{q:Array(Float32)}}) AS dist" in text
    # The shape vector indexes recognise: no FINAL, nothing but the distance in the ORDER BY.
    assert "FROM `default`.`photos`\n" in text and "FINAL" not in text
    assert text.rstrip().endswith("ORDER BY dist ASC\nLIMIT {k:UInt32}")
    assert "WHERE" not in text and "photo_embed," not in text.split("AS dist")[0].split(function)[0]
    assert params == {}


def test_search_sql_can_return_the_vectors_for_collapsing():
    text, _ = sql.search_sql(CLICKHOUSE, "default", "photos", with_vector=True)
    assert ", photo_embed, cosineDistance(" in text


def test_the_server_kind_picks_the_dialect():
    assert isinstance(dialect_for(True), MyScaleDialect) and dialect_for(True).name == "myscale"
    assert isinstance(dialect_for(False), ClickHouseDialect) and dialect_for(False).name == "clickhouse"


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
    assert set(re.findall(r"\{(\w+):", CLICKHOUSE.index_mutations_sql())) == {"db", "table", "name"}
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


def _reader(answers):
    """A row reader answering by the table the SQL reads from; records what it was asked."""
    asked = []

    def read(action, text, params):
        asked.append(params)
        return next(rows for table, rows in answers.items() if table in text)

    return read, asked


PARAMS = {"db": "db", "table": "photos", "name": "photo_embed_index"}


@pytest.mark.parametrize("index_row, mutations, has_rows, status", [
    ([], None, True, "Absent"),
    ([("vector_similarity", 0)], [(1, "")], True, "InProgress"),
    ([("vector_similarity", 0)], [(0, "")], True, "NotBuilt"),
    ([("vector_similarity", 0)], [(0, "")], False, "Built"),
    ([("vector_similarity", 4096)], [(0, "")], True, "Built"),
])
def test_clickhouse_index_status_from_its_row_and_mutations(index_row, mutations, has_rows, status):
    read, asked = _reader({"data_skipping_indices": index_row, "system.mutations": mutations})
    result = CLICKHOUSE.index_status(read, PARAMS, has_rows=lambda: has_rows)
    assert result["status"] == status and result["name"] == "photo_embed_index"
    assert all(params == PARAMS for params in asked)


def test_clickhouse_index_status_reports_the_failure_reason():
    read, _ = _reader({"data_skipping_indices": [("vector_similarity", 0)],
                       "system.mutations": [(1, "Memory limit exceeded")]})
    assert CLICKHOUSE.index_status(read, PARAMS, has_rows=lambda: True) == {
        "status": "InProgress", "type": "vector_similarity", "fail_reason": "Memory limit exceeded",
        "name": "photo_embed_index"}


def test_myscale_index_status_is_its_own_row():
    read, _ = _reader({"vector_indices": [("MSTG", "Built", "")]})
    assert MYSCALE.index_status(read, PARAMS, has_rows=lambda: True) == {
        "status": "Built", "type": "MSTG", "fail_reason": None, "name": "photo_embed_index"}
    read, _ = _reader({"vector_indices": []})
    assert MYSCALE.index_status(read, PARAMS, has_rows=lambda: True)["status"] == "Absent"


def test_search_settings_choose_exact_or_indexed_and_lift_the_limit():
    assert CLICKHOUSE.search_settings(10, exact=True, width=64) == {"use_skip_indexes": 0}
    assert CLICKHOUSE.search_settings(10, exact=False, width=64) == {"hnsw_candidate_list_size_for_search": 64}
    assert CLICKHOUSE.search_settings(10, exact=False, width=None) == {}
    # Above ClickHouse's default max_limit_for_vector_search_queries (1000) the limit is raised, not refused.
    assert CLICKHOUSE.search_settings(5000, exact=False, width=None) == {"max_limit_for_vector_search_queries": 5000}
    # MyScale takes none of ClickHouse's settings (an unknown setting is an error there).
    assert MYSCALE.search_settings(5000, exact=True, width=64) == {}
