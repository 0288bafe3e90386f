"""The filter grammar: what may be filtered, the sentences of refusals, and values bound, never in SQL."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from services.common.errors import BadRequest
from services.photostore import sql
from services.photostore.dialects import CLICKHOUSE, MYSCALE
from services.photostore.errors import InvalidFilter
from services.photostore.filters import FILTER_COLUMNS, Filters, filter_sql, parse_filters, parse_filters_json

# Values that must reach the server only as bound parameters.
SECRET_VALUES = ["Sp'ain; DROP TABLE x", "needle-text", 1234.5, "photo-to-skip"]


def _filters():
    return {
        "photo_location_country": "Sp'ain; DROP TABLE x",
        "photo_width": {"gte": 1234.5, "lt": 9999},
        "photo_description": {"contains": "needle-text"},
        "photographer_username": ["alice", "bob"],
    }


@pytest.mark.parametrize("dialect", [CLICKHOUSE, MYSCALE])
def test_filter_values_never_appear_in_the_sql_text(dialect):
    text, params = sql.search_sql(dialect, "default", "photos", filters=_filters(),
                                  exclude_photo_id="photo-to-skip")
    for value in SECRET_VALUES:
        assert str(value) not in text
    assert "alice" not in text and "9999" not in text
    values = list(params.values())
    for value in ("Sp'ain; DROP TABLE x", 1234.5, 9999.0, "needle-text", "photo-to-skip", ["alice", "bob"]):
        assert value in values
    # Every placeholder in the text has a value, and every value a placeholder (q and k bound by the caller).
    placeholders = set(re.findall(r"\{(\w+):", text))
    assert placeholders == set(params) | {"q", "k"}


def test_filter_conditions_per_kind():
    conditions, params = filter_sql(_filters())
    assert "photo_location_country = {f0:String}" in conditions
    assert "photo_width >= {f1:Float64}" in conditions
    assert "photo_width < {f2:Float64}" in conditions
    assert "positionCaseInsensitiveUTF8(photo_description, {f3:String}) > 0" in conditions
    assert "photographer_username IN {f4:Array(String)}" in conditions
    assert params["f1"] == 1234.5 and params["f4"] == ["alice", "bob"]


def test_validated_filters_read_as_the_callers_mapping_and_give_the_same_sql():
    parsed = parse_filters(_filters())
    assert isinstance(parsed, Filters) and dict(parsed) == _filters()
    assert parse_filters(parsed) is parsed
    assert filter_sql(parsed) == filter_sql(_filters())
    assert parse_filters(None) is None and parse_filters({}) is None and filter_sql(None) == ([], {})


@pytest.mark.parametrize("filters, words", [
    ({"id": 3}, "Cannot filter on 'id'"),
    ({"photo_embed": [1.0]}, "Cannot filter on 'photo_embed'"),
    ({"photo_width; DROP": 1}, "Cannot filter on"),
    ({"photo_width": {"between": 1}}, "Unknown filter operator 'between'"),
    ({"photo_width": {"contains": "1"}}, "'contains' works on text columns"),
    ({"photo_width": "wide"}, "needs a number"),
    ({"photo_width": True}, "needs a number"),
    ({"photo_width": float("nan")}, "needs a number"),
    ({"photo_location_city": 5}, "needs text"),
    ({"photo_location_city": []}, "non-empty list"),
    ({"photo_location_city": {"in": "Lima"}}, "non-empty list"),
    ({"photo_location_city": {}}, "has no operator"),
    ("Spain", "filters must be a JSON object"),
    (["photo_id"], "filters must be a JSON object"),
])
def test_bad_filters_are_refused_with_a_sentence(filters, words):
    with pytest.raises(InvalidFilter) as caught:
        filter_sql(filters)
    assert words in caught.value.message and caught.value.message.endswith(".")
    assert isinstance(caught.value, BadRequest) and caught.value.status_code == 422
    assert caught.value.code == "invalid_filter"


def test_an_unknown_field_is_named_with_the_fields_that_can_be_filtered():
    with pytest.raises(InvalidFilter) as caught:
        parse_filters({"colour": "red"})
    assert "'colour'" in caught.value.message
    assert all(column in caught.value.message for column in FILTER_COLUMNS)


@pytest.mark.parametrize("text, words", [
    ("country=Spain", "filters must be a JSON object, e.g."),
    ("[1, 2]", "filters must be a JSON object, e.g."),
    ('{"colour": "red"}', "Cannot filter on 'colour'"),
])
def test_filters_as_json_text(text, words):
    assert parse_filters_json(None) is None and parse_filters_json("  ") is None
    assert dict(parse_filters_json('{"photo_location_country": "Peru"}')) == {"photo_location_country": "Peru"}
    with pytest.raises(InvalidFilter) as caught:
        parse_filters_json(text)
    assert caught.value.message.startswith(words) or words in caught.value.message


def test_the_grammar_loads_without_the_database_driver():
    # The gateway's request schema uses it; importing it must not pull in clickhouse_connect.
    code = ("import sys; import services.photostore.filters; import services.api.schemas; "
            "assert 'clickhouse_connect' not in sys.modules, 'clickhouse_connect imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
