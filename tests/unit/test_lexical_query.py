"""A person's words as a lexical query (services/photostore/words.py), and the SQL each server gets for
it (services/photostore/lexical.py, dialects.py) without a server: phrases, exclusions, stop-words,
truncation, text that looks like SQL kept as data, and MyScale's fts index and TextSearch()."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.photostore.dialects import CLICKHOUSE, MYSCALE
from services.photostore.lexical import exclusion_sql, lexical_sql, match_sql, parse_query, split_words


def test_words_are_split_and_lower_cased_as_the_text_index_splits_them():
    query = parse_query("Sunset over LISBON's tram-28, IMG_4021.jpg café")
    assert query.words == ("sunset", "over", "lisbon", "tram", "28", "img", "4021", "jpg", "café")
    assert query.ignored == ("s",)  # the lone letter of "Lisbon's"
    assert not query.empty and not query.truncated
    assert split_words("Ab_c.D-é") == ["ab", "c", "d", "é"]


def test_quoted_text_is_a_phrase_and_minus_excludes_a_word_or_a_phrase():
    query = parse_query('"the old harbour" boats -night -"black cat" -IMG_0001')
    assert query.phrases == (("the", "old", "harbour"),)
    assert query.words == ("boats",)
    assert query.excluded == (("night",), ("black", "cat"), ("img", "0001"))
    # The phrase's words score too, stop-words left out; they stay in the phrase for adjacency.
    assert query.terms == ("boats", "old", "harbour")


def test_an_unclosed_quote_runs_to_the_end_and_a_hyphen_inside_a_word_is_no_minus():
    assert parse_query('well-known "open quote').phrases == (("open", "quote"),)
    assert parse_query("well-known").words == ("well", "known")
    assert parse_query("well-known").excluded == ()


def test_stop_words_only_in_english_or_spanish_leave_nothing_to_search():
    for text in ("the of and", "el de la y los", "the - el"):
        query = parse_query(text)
        assert query.empty and query.words == () and query.phrases == ()
    assert parse_query("the of and").ignored == ("the", "of", "and")


def test_punctuation_only_leaves_nothing_to_search():
    query = parse_query("!!! ... ,;: -- \"\"")
    assert query.empty
    assert "!!!" in query.ignored


def test_exclusions_alone_are_nothing_to_search_for():
    assert parse_query("-dog -cat").empty


def test_ten_thousand_characters_are_cut_at_a_word_boundary_and_flagged():
    text = " ".join(f"word{i}" for i in range(2000))  # about 15,000 characters
    query = parse_query(text[:10_000])
    assert query.truncated
    assert len(query.text) <= 1000 and not query.text.endswith(" ")
    assert all(word.startswith("word") and word[4:].isdigit() for word in query.words)
    assert query.words[-1] == query.text.split()[-1]  # no word cut in half
    assert not parse_query("short").truncated


@pytest.mark.parametrize("text", ["'; DROP TABLE photos; --", "x' OR '1'='1", "{q:String}) OR 1=1",
                                  "back\\slash 'quoted' `tick`"])
def test_sql_looking_text_and_quotes_stay_data(text):
    store = SimpleNamespace(dialect=CLICKHOUSE, database="default", table="photos")
    query = parse_query(text)
    sql_text, params = lexical_sql(store, query, "text", with_vector=False, filters=None, exclude_photo_id=None)
    # The SQL text is the same as for a harmless word: what was typed only reaches the bound values.
    harmless, _ = lexical_sql(store, parse_query("harbour"), "text", with_vector=False, filters=None,
                              exclude_photo_id=None)
    assert sql_text == harmless
    assert params["lx_words"] == list(query.words) and query.words
    # Quotes and backslashes inside a phrase are separators, like any other punctuation.
    assert parse_query('say "it\'s \\ fine"').phrases == (("it", "s", "fine"),)


def test_the_clickhouse_sql_uses_the_text_index_and_binds_every_word():
    query = parse_query('red "old harbour" -night -"black cat"')
    conditions, params = match_sql(query, "text")
    assert "hasAnyTokens(search_text, {lx_words:Array(String)})" in conditions
    assert "hasAllTokens(search_text, {lx_phrase0:Array(String)})" in conditions
    assert "hasSubstr(tokens(search_text), {lx_phrase0:Array(String)})" in conditions
    assert params == {"lx_words": ["red"], "lx_phrase0": ["old", "harbour"], "lx_not": ["night"],
                      "lx_notp0": ["black", "cat"]}
    # Without the index: the same conditions with token functions.
    plain, _ = match_sql(query, "none")
    assert "hasAny(tokens(search_text), {lx_words:Array(String)})" in plain
    assert not any("Tokens(" in condition for condition in plain)


def test_exclusions_for_a_vector_search_are_conditions_with_bound_words():
    conditions, params = exclusion_sql(parse_query("-dog -\"black cat\" sea"))
    assert conditions == ["NOT hasAny(tokens(search_text), {lx_not:Array(String)})",
                          "NOT hasSubstr(tokens(search_text), {lx_notp0:Array(String)})"]
    assert params == {"lx_not": ["dog"], "lx_notp0": ["black", "cat"]}
    assert exclusion_sql(parse_query("sea")) == ([], {})


def test_myscale_gets_its_fts_index_and_textsearch():
    ddl = MYSCALE.text_index_sql("db", "photos", "1.8.0")
    assert ddl == ("ALTER TABLE `db`.`photos` ADD INDEX IF NOT EXISTS `search_text_index` search_text "
                   """TYPE fts('{"search_text":{"tokenizer":{"type":"simple"}}}') GRANULARITY 1""")
    store = SimpleNamespace(dialect=MYSCALE, database="db", table="photos")
    sql_text, params = lexical_sql(store, parse_query("red boats -night"), "fts", with_vector=True,
                                   filters={"photo_location_country": "Spain"}, exclude_photo_id=None)
    assert ("TextSearch('enable_nlq=false', 'operator=OR')(search_text, {lx_text:String}) AS lexical_score"
            in sql_text)
    assert params["lx_text"] == "red boats"
    assert "hasAnyTokens" not in sql_text and "hasAny(tokens(search_text), {lx_words:Array(String)})" in sql_text
    assert "photo_location_country = {f0:String}" in sql_text and params["f0"] == "Spain"
    assert "cosineDistance(photo_embed, {q:Array(Float32)}) AS dist" in sql_text
    assert sql_text.rstrip().endswith("ORDER BY lexical_score DESC\nLIMIT {k:UInt32}")
    assert MYSCALE.text_index_kind == "fts"


def test_clickhouse_has_the_text_index_from_26_2_only():
    assert CLICKHOUSE.text_index_sql("db", "photos", "26.1.3.1") is None
    assert CLICKHOUSE.text_index_sql("db", "photos", "25.8.1") is None
    ddl = CLICKHOUSE.text_index_sql("db", "photos", "26.9.2.1")
    assert ddl == ("ALTER TABLE `db`.`photos` ADD INDEX IF NOT EXISTS `search_text_index` search_text "
                   "TYPE text(tokenizer = splitByNonAlpha, preprocessor = lower(search_text))")


def test_the_clickhouse_score_is_bm25_from_bound_statistics():
    sql_text, params = lexical_sql(SimpleNamespace(dialect=CLICKHOUSE, database="default", table="photos"),
                                   parse_query("red boats"), "text", with_vector=False, filters=None,
                                   exclude_photo_id="p1")
    assert "{lx_idf:Array(Float64)}" in sql_text and "{lx_avgdl:Float64}" in sql_text
    assert "photo_id != {exclude_photo_id:String}" in sql_text and params["exclude_photo_id"] == "p1"
    assert params["lx_terms"] == ["red", "boats"]
    assert sql_text.rstrip().endswith("ORDER BY lexical_score DESC, photo_id ASC\nLIMIT {k:UInt32}")


def test_a_vector_search_ands_the_exclusions_in_with_the_filters():
    from services.photostore import sql

    text, params = sql.search_sql(CLICKHOUSE, "default", "photos", filters={"photo_location_country": "Spain"},
                                  where=exclusion_sql(parse_query("-dog")))
    assert "WHERE photo_location_country = {f0:String} AND NOT hasAny(tokens(search_text), " in text
    assert params == {"f0": "Spain", "lx_not": ["dog"]}
    assert text.rstrip().endswith("ORDER BY dist ASC\nLIMIT {k:UInt32}")
