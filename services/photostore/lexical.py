"""Word (lexical) search in the photo table: the `search_text` column, its full-text index, BM25.

`search_text` is a MATERIALIZED column: the server computes it from the other columns on every insert
(descriptions, keywords, the photographer, the place, a local file's name and folders), so every
writer, the re-embedding copy and a restore (which never dumps MATERIALIZED columns) get it without
knowing it exists. It is lower-cased, and the index splits it as `words.split_words` splits a query.

Three ways to search it, read once per data version from the table's indexes (`lexical_status`):
- "text": ClickHouse 26.2+ and the embedded store: a `text` index that `hasAnyTokens` / `hasAllTokens`
  use to skip granules; BM25 (k1 1.2, b 0.75) is computed in the query from bound document
  frequencies, which are read once per data version and word, and kept on the store object.
- "fts": MyScale: its Tantivy `fts` index and `TextSearch()`, which is BM25 too.
- "none": an older ClickHouse: the same BM25 query with token functions over every row.
Phrases and exclusions are checked on the token arrays (`hasSubstr`: adjacent, in order).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.errors import BadRequest
from services.photostore import sql
from services.photostore.cluster import Layout
from services.photostore.columns import PHOTO_COLUMNS
from services.photostore.connection import Connection, is_unknown_table
from services.photostore.dialects import TEXT_INDEX_NAME, Dialect, dialect_for
from services.photostore.errors import StoreError
from services.photostore.filters import filter_sql
from services.photostore.results import MAX_RESULTS, check_count, ranked
from services.photostore.words import LexicalQuery, parse_query, split_words

if TYPE_CHECKING:
    from services.photostore.client import PhotoStore

__all__ = ["LexicalQuery", "exclusion_sql", "lexical_search", "lexical_status", "parse_query", "split_words"]

logger = logging.getLogger(__name__)

SEARCH_TEXT = "search_text"
K1, B = 1.2, 0.75
STATE_RECHECK_S = 2.0
# The columns whose words a person may search for, in the order they are joined.
SOURCE_COLUMNS = ("photo_description", "ai_description", "photo_keywords", "photographer_username",
                  "photographer_first_name", "photographer_last_name", "photo_location_name",
                  "photo_location_city", "photo_location_country", "photo_image_url")
# A file read from a folder: its path (folder names and file name), decoded from the file:// URL.
# Other URLs (Unsplash's, upload://) add nothing: their words are not the photo's.
SEARCH_TEXT_EXPRESSION = (
    "lowerUTF8(concatWithSeparator(' ', photo_description, ai_description, photo_keywords, "
    "photographer_username, photographer_first_name, photographer_last_name, photo_location_name, "
    "toString(photo_location_city), toString(photo_location_country), "
    "if(startsWith(photo_image_url, 'file://'), decodeURLComponent(substring(photo_image_url, 8)), '')))"
)
_TOKENS = f"tokens({SEARCH_TEXT})"  # splitByNonAlpha, the text index's tokenizer, on any server


# -- the column and its index (run by migrations.add_missing_columns) ------------------------------

def add_column_sql(database: str, table: str) -> str:
    return (f"ALTER TABLE {sql.table_ref(database, table)} ADD COLUMN IF NOT EXISTS {SEARCH_TEXT} String "
            f"MATERIALIZED {SEARCH_TEXT_EXPRESSION}")


def materialize_column_sql(database: str, table: str) -> str:
    return f"ALTER TABLE {sql.table_ref(database, table)} MATERIALIZE COLUMN {SEARCH_TEXT}"


def materialize_index_sql(database: str, table: str) -> str:
    return f"ALTER TABLE {sql.table_ref(database, table)} MATERIALIZE INDEX {sql.quote_identifier(TEXT_INDEX_NAME)}"


def _server(connection: Connection) -> tuple[Dialect, str]:
    rows = connection.query("server check", "SELECT version(), (SELECT count() FROM system.tables "
                            "WHERE database = 'system' AND name = 'vector_indices')").result_rows
    return dialect_for(bool(rows[0][1])), str(rows[0][0])


def _index_type(connection: Connection, database: str, table: str) -> str | None:
    rows = connection.query(
        "text index check", "SELECT type FROM system.data_skipping_indices WHERE database = {db:String} "
        "AND table = {table:String} AND name = {name:String}",
        {"db": database, "table": table, "name": TEXT_INDEX_NAME}).result_rows
    return str(rows[0][0]) if rows else None


def add_search_text(connection: Connection, layout: Layout, database: str, table: str, present: set[str]) -> None:
    """Give a table `search_text` (computed for the rows already there too) and, where the server has
    one, its full-text index (built over those rows). A table still lacking a source column (being
    brought up to date by an older process) is left for later. A server that refuses the index keeps
    searching words without it."""
    if not set(SOURCE_COLUMNS) <= present:
        return
    sync = {"mutations_sync": 2}  # return when the rows already stored are done
    if SEARCH_TEXT not in present:
        for statement in layout.alter_table(add_column_sql(database, table), database, table):
            connection.command("column addition", statement)
        connection.command("column build", layout.on_rows(materialize_column_sql(database, table), database, table),
                           settings=sync)
        logger.info("added the column %s to %s.%s", SEARCH_TEXT, database, table)
    local = layout.local_table(table)
    if _index_type(connection, database, local) is not None:
        return
    dialect, version = _server(connection)
    ddl = dialect.text_index_sql(database, table, version)
    if ddl is None:
        logger.info("%s.%s: server %s has no full-text index; words are searched without one", database, table,
                    version)
        return
    try:
        connection.command("text index creation", layout.on_rows(ddl, database, table))
        connection.command("text index build", layout.on_rows(materialize_index_sql(database, table), database, table),
                           settings=sync)
    except StoreError as error:
        logger.warning("%s.%s: the full-text index could not be added (%s); words are searched without it",
                       database, table, error)


# -- the state: which index, and the BM25 statistics ------------------------------------------------

def _state(store: PhotoStore) -> dict[str, Any]:
    """The index kind and BM25 statistics of the table, kept on the store object for one data version
    (any write changes it; a cluster has none, so its state is read afresh). The version itself is asked
    at most every STATE_RECHECK_S: a query then costs one round trip to the store, not two, and statistics
    a second old move BM25's scores by a hair, never which photos match."""
    state = getattr(store, "_lexical_state", None)
    now = time.monotonic()
    if state is not None and state["version"] is not None and now - state["checked"] < STATE_RECHECK_S:
        return state
    version = store.data_version()
    if state is not None and version is not None and state["version"] == version:
        state["checked"] = now
        return state
    kind = _index_type(store.connection, store.database, store.layout.local_table(store.table))
    state = {"version": version, "kind": kind if kind in ("text", "fts") else "none", "df": {}, "checked": now}
    if state["kind"] != "fts":
        rows = store.connection.read_rows(
            "word statistics", f"SELECT count(), avg(length({_TOKENS})) FROM {sql.table_ref(store.database, store.table)}")
        n, avgdl = (rows[0][0], float(rows[0][1] or 0.0)) if rows else (0, 0.0)
        state["n"], state["avgdl"] = int(n), avgdl if math.isfinite(avgdl) else 0.0
    store._lexical_state = state
    return state


def _idf(state: dict[str, Any], terms: Sequence[str]) -> list[float] | None:
    """BM25's idf of each term, ln(1 + (N - df + 0.5) / (df + 0.5)), from the document frequencies kept for
    this data version; None when one is not kept yet, and the query counts them itself (`_DF_SQL`)."""
    if any(term not in state["df"] for term in terms):
        return None
    n = state["n"]
    return [math.log(1.0 + (n - state["df"][t] + 0.5) / (state["df"][t] + 0.5)) for t in terms]


def lexical_status(store: PhotoStore) -> dict[str, Any]:
    """{"index": "text" | "fts" | "none", "note": a sentence or None}: how words are searched (for
    `make status`)."""
    if store.known_dim() is None:
        return {"index": "none", "note": "There is no photo table yet."}
    kind = _state(store)["kind"]
    if kind != "none":
        return {"index": kind, "note": None}
    dialect, version = store.dialect, store._server_version or ""
    if dialect.text_index_sql(store.database, store.table, version) is None:
        note = (f"This ClickHouse ({version}) has no text index (26.2 and newer have one): word search reads "
                "every photo's words, which slows down on large tables.")
    else:
        note = ("The photo table has no full-text index: word search reads every photo's words. A worker or "
                "the gateway adds it when it opens the table; see its log if it could not.")
    return {"index": "none", "note": note}


# -- SQL ------------------------------------------------------------------------------------------------

def exclusion_sql(query: LexicalQuery) -> tuple[list[str], dict[str, Any]]:
    """WHERE conditions and their bound values that drop photos holding an excluded word or phrase
    (for a vector search: `PhotoStore.search(..., where=exclusion_sql(query))`)."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    single = [words[0] for words in query.excluded if len(words) == 1]
    if single:
        conditions.append(f"NOT hasAny({_TOKENS}, {{lx_not:Array(String)}})")
        params["lx_not"] = single
    for number, words in enumerate(w for w in query.excluded if len(w) > 1):
        conditions.append(f"NOT hasSubstr({_TOKENS}, {{lx_notp{number}:Array(String)}})")
        params[f"lx_notp{number}"] = list(words)
    return conditions, params


def match_sql(query: LexicalQuery, kind: str) -> tuple[list[str], dict[str, Any]]:
    """The conditions a matching photo meets: any of the words, every phrase, no exclusion. With the
    text index, hasAnyTokens / hasAllTokens let it skip the granules without them."""
    conditions, params = [], {}
    if query.words:
        params["lx_words"] = list(query.words)
        conditions.append("hasAnyTokens(search_text, {lx_words:Array(String)})" if kind == "text"
                          else f"hasAny({_TOKENS}, {{lx_words:Array(String)}})")
    for number, phrase in enumerate(query.phrases):
        name = f"lx_phrase{number}"
        params[name] = list(phrase)
        if kind == "text":
            conditions.append(f"hasAllTokens(search_text, {{{name}:Array(String)}})")
        conditions.append(f"hasSubstr({_TOKENS}, {{{name}:Array(String)}})")
    excluded, excluded_params = exclusion_sql(query)
    return conditions + excluded, {**params, **excluded_params}


def lexical_sql(store: PhotoStore, query: LexicalQuery, kind: str, *, with_vector: bool,
                filters: dict[str, Any] | None, exclude_photo_id: str | None,
                count_df: bool = False) -> tuple[str, dict[str, Any]]:
    """SELECT of the matching photos, best BM25 first; binds everything but `k` (and `lx_idf` and
    `lx_avgdl`, the statistics, on ClickHouse)."""
    where, params = filter_sql(filters)
    if exclude_photo_id is not None:
        where.append("photo_id != {exclude_photo_id:String}")
        params["exclude_photo_id"] = exclude_photo_id
    matches, match_params = match_sql(query, kind)
    params.update(match_params, lx_terms=list(query.terms))
    score = store.dialect.text_score(SEARCH_TEXT, "lx_text") if kind == "fts" else None
    if score is None:
        tf = "countEqual(toks, w)"
        score = (f"arraySum(arrayMap((w, idf) -> idf * {tf} * {K1 + 1} / ({tf} + {K1} * ({1 - B} + {B} * "
                 "length(toks) / {lx_avgdl:Float64})), {lx_terms:Array(String)}, {lx_idf:Array(Float64)}))")
    else:
        params["lx_text"] = " ".join(query.terms)
    distance = "cosineDistance(photo_embed, {q:Array(Float32)})" if with_vector else "CAST(NULL, 'Nullable(Float64)')"
    order = "lexical_score DESC" if kind == "fts" else "lexical_score DESC, photo_id ASC"
    table = sql.table_ref(store.database, store.table)
    counted = ""
    if count_df and kind != "fts":
        # The terms' document frequencies, counted in this query (the index finds their rows) and returned
        # with each row, to be kept: a new word costs no second round trip.
        any_term = ("hasAnyTokens(search_text, {lx_terms:Array(String)})" if kind == "text"
                    else f"hasAny({_TOKENS}, {{lx_terms:Array(String)}})")
        counted = (f",\n    (SELECT sumForEach(arrayMap(w -> toUInt64(has({_TOKENS}, w)), {{lx_terms:Array(String)}})) "
                   f"FROM {table} WHERE {any_term}) AS lx_counted,\n"
                   "    arrayResize(lx_counted, length({lx_terms:Array(String)}), toUInt64(0)) AS lx_df,\n"
                   "    arrayMap(d -> log(1 + ({lx_n:Float64} - d + 0.5) / (d + 0.5)), lx_df) AS lx_idf_counted")
        score = score.replace("{lx_idf:Array(Float64)}", "lx_idf_counted")
    return (f"WITH {_TOKENS} AS toks{counted}\n"
            f"SELECT {', '.join(PHOTO_COLUMNS)}, {score} AS lexical_score,\n"
            "    arrayFilter(w -> has(toks, w), {lx_terms:Array(String)}) AS matched, " + distance + " AS dist"
            + (", lx_df" if counted else "") + "\n"
            f"FROM {table}\n"
            + (f"WHERE {' AND '.join(matches + where)}\n" if matches or where else "")
            + f"ORDER BY {order}\nLIMIT {{k:UInt32}}"), params


# -- search ----------------------------------------------------------------------------------------------

def lexical_search(store: PhotoStore, query: LexicalQuery, *, vector: np.ndarray | None = None, top_k: int = 10,
                   offset: int = 0, filters: dict[str, Any] | None = None,
                   exclude_photo_id: str | None = None) -> list[dict[str, Any]]:
    """The photos matching `query` (see LexicalQuery), best BM25 first. Each has the keys of
    `PhotoStore.search`'s rows (`rank` counts from the first page) plus `lexical_score`, `matched` (the
    query's words found in it, in query order) and `score`: the cosine similarity to `vector`, or None
    without one. No table yet, or nothing to search for: []."""
    top_k, offset = check_count("top_k", top_k, 1), check_count("offset", offset, 0)
    if top_k + offset > MAX_RESULTS:
        raise BadRequest(f"offset + top_k must be at most {MAX_RESULTS}, not {offset + top_k}.")
    dim = store.known_dim()
    if query.empty or dim is None:
        return []
    params_extra: dict[str, Any] = {}
    if vector is not None:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.size != dim or not np.all(np.isfinite(q)):
            raise BadRequest(f"The query vector must hold {dim} finite numbers, as the table's vectors do.")
        params_extra["q"] = q.tolist()
    try:
        state = _state(store)
        idf = _idf(state, query.terms) if state["kind"] != "fts" else []
        sql_text, params = lexical_sql(store, query, state["kind"], with_vector=vector is not None, filters=filters,
                                       exclude_photo_id=exclude_photo_id, count_df=idf is None)
        if state["kind"] != "fts":
            params.update(lx_avgdl=max(state["avgdl"], 1.0), **({"lx_idf": idf} if idf is not None else
                                                                 {"lx_n": float(state["n"])}))
        params.update(params_extra)
        wanted = offset + top_k
        fetch = min(MAX_RESULTS, wanted + max(4, wanted // 10))  # room for duplicate versions of a photo
        while True:
            params["k"] = fetch
            rows = store.connection.read_rows("word search", sql_text, params)
            if idf is None and rows:
                state["df"].update(zip(query.terms, (int(c) for c in rows[0][-1])))
                rows = [row[:-1] for row in rows]
            photos = _folded(rows)
            if len(photos) >= wanted or len(rows) < fetch or fetch >= MAX_RESULTS:
                break
            fetch = min(MAX_RESULTS, fetch * 2)
    except StoreError as error:
        if is_unknown_table(error):
            store._info = None
            return []
        raise
    return ranked(photos, wanted, offset, None)


def _folded(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows (columns, lexical_score, matched, distance) as photos, best first, one per photo_id (an older
    version of a photo written twice, until a merge, is dropped); equal scores in photo_id order."""
    count = len(PHOTO_COLUMNS)
    ordered = sorted(rows, key=lambda row: (-float(row[count]), row[0]))
    photos, seen = [], set()
    for row in ordered:
        if row[0] in seen:
            continue
        seen.add(row[0])
        photo = dict(zip(PHOTO_COLUMNS, row))
        photo["lexical_score"] = float(row[count])
        photo["matched"] = list(row[count + 1])
        photo["score"] = None if row[count + 2] is None else 1.0 - float(row[count + 2])
        photos.append(photo)
    return photos


def explain_lexical(store: PhotoStore, query: LexicalQuery, top_k: int = 10) -> str:
    """The server's `EXPLAIN indexes = 1` of a lexical search: shows whether the text index is used."""
    state = _state(store)
    sql_text, params = lexical_sql(store, query, state["kind"], with_vector=False, filters=None,
                                   exclude_photo_id=None)
    params.update(k=int(top_k), lx_idf=[1.0] * len(query.terms), lx_avgdl=1.0)
    rows = store.connection.read_rows("explain", "EXPLAIN indexes = 1 " + sql_text, params)
    return "\n".join(str(row[0]) for row in rows)
