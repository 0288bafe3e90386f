"""What differs between the servers that speak the ClickHouse HTTP interface: the one place that knows.

ClickHouse (and the embedded store): `vector_similarity('hnsw', 'cosineDistance', dim)`, added to a
filled table and then materialised; its state comes from system.data_skipping_indices and
system.mutations. MyScale: `ADD VECTOR INDEX ... TYPE MSTG` (or another type, e.g. SCANN on
open-source MyScaleDB), built in the background, its state in system.vector_indices. Callers hold a
`Dialect` (from `dialect_for`) and never ask which server it is.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.photostore.sql import check_dim, quote_identifier, table_ref

INDEX_NAME = "photo_embed_index"
# The full-text index over the photo table's `search_text` column (services/photostore/lexical.py).
TEXT_INDEX_NAME = "search_text_index"
# The index states, in MyScale's words (system.vector_indices); ClickHouse's are mapped onto them.
INDEX_ABSENT, INDEX_NOT_BUILT, INDEX_IN_PROGRESS, INDEX_BUILT = "Absent", "NotBuilt", "InProgress", "Built"
# ClickHouse refuses vector-index queries whose LIMIT is above this setting (default 1000); we raise it
# per query instead of refusing, since a deep page is the caller's choice and still correct.
_CLICKHOUSE_DEFAULT_VECTOR_LIMIT = 1000

_STATUS_PARAMS = "WHERE database = {db:String} AND table = {table:String} AND name = {name:String}"

# Reads rows for the index status: (action, sql, params) -> rows.
ReadRows = Callable[[str, str, dict[str, Any]], list]


def absent_index() -> dict[str, Any]:
    return {"status": INDEX_ABSENT, "type": None, "fail_reason": None, "name": INDEX_NAME}


class Dialect:
    """A server's SQL for vector search and its index. Subclasses fill in every method."""

    name: str
    # The function whose value is cosine distance (1 - cosine similarity).
    distance_function: str

    def distance(self, column: str, param: str) -> str:
        return f"{self.distance_function}({column}, {{{param}:Array(Float32)}})"

    def distance_to(self, column: str, expression: str) -> str:
        """The distance to an expression (an alias of a WITH clause), not a bound parameter."""
        return f"{self.distance_function}({column}, {expression})"

    def add_index_sql(self, database: str, table: str, dim: int, index_type: str = "MSTG") -> str:
        raise NotImplementedError

    def build_index_sql(self, database: str, table: str) -> str | None:
        """What builds the index over rows that were there before it (None: adding it is enough)."""
        return None

    def wait_index_sql(self, database: str, table: str) -> str | None:
        """What waits for a build started in the background (None: the build itself waits)."""
        return None

    def drop_index_sql(self, database: str, table: str) -> str:
        raise NotImplementedError

    def index_status_sql(self) -> str:
        """The index's row, binding db, table and name."""
        raise NotImplementedError

    def index_status(self, read: ReadRows, params: dict[str, Any], has_rows: Callable[[], bool]) -> dict[str, Any]:
        """{"status": Absent | NotBuilt | InProgress | Built, "type", "fail_reason", "name"}, read with `read`."""
        raise NotImplementedError

    def search_settings(self, limit: int, *, exact: bool, width: int | None) -> dict[str, Any]:
        """Query settings of one search: exact or indexed, the search width, the top-k limit."""
        return {}

    # The full-text index kind ("text" or "fts"), as system.data_skipping_indices names it.
    text_index_kind: str

    def text_index_sql(self, database: str, table: str, version: str) -> str | None:
        """The full-text index on `search_text`, or None where this server version has none."""
        return None

    def text_score(self, column: str, param: str) -> str | None:
        """The server's own relevance score of `column` for the words in `param` (bound String), or
        None: the score is then BM25 computed in the query from bound document frequencies."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ClickHouseDialect(Dialect):
    """ClickHouse and the embedded store (chDB)."""

    name = "clickhouse"
    distance_function = "cosineDistance"

    def add_index_sql(self, database: str, table: str, dim: int, index_type: str = "MSTG") -> str:
        # index_type is MyScale's choice; ClickHouse has one vector index kind.
        dim = check_dim(dim)
        return (f"ALTER TABLE {table_ref(database, table)} ADD INDEX IF NOT EXISTS {quote_identifier(INDEX_NAME)} "
                f"photo_embed TYPE vector_similarity('hnsw', 'cosineDistance', {dim})")

    def build_index_sql(self, database: str, table: str) -> str | None:
        # Run with mutations_sync=2 it returns when the build is done.
        return f"ALTER TABLE {table_ref(database, table)} MATERIALIZE INDEX {quote_identifier(INDEX_NAME)}"

    def drop_index_sql(self, database: str, table: str) -> str:
        return f"ALTER TABLE {table_ref(database, table)} DROP INDEX IF EXISTS {quote_identifier(INDEX_NAME)}"

    def index_status_sql(self) -> str:
        return f"SELECT type, data_compressed_bytes FROM system.data_skipping_indices {_STATUS_PARAMS}"

    def index_mutations_sql(self) -> str:
        """Unfinished mutations that build the index, and the latest failure's reason."""
        return ("SELECT countIf(NOT is_done), argMax(latest_fail_reason, create_time) FROM system.mutations "
                "WHERE database = {db:String} AND table = {table:String} AND position(command, {name:String}) > 0")

    def index_status(self, read: ReadRows, params: dict[str, Any], has_rows: Callable[[], bool]) -> dict[str, Any]:
        rows = read("index status", self.index_status_sql(), params)
        if not rows:
            return absent_index()
        kind, built_bytes = rows[0]
        running, reason = read("index status", self.index_mutations_sql(), params)[0]
        if running:
            status = INDEX_IN_PROGRESS
        elif not built_bytes and has_rows():
            status = INDEX_NOT_BUILT  # added over stored rows and never materialised
        else:
            status = INDEX_BUILT
        return {"status": status, "type": str(kind), "fail_reason": reason or None, "name": INDEX_NAME}

    def search_settings(self, limit: int, *, exact: bool, width: int | None) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if limit > _CLICKHOUSE_DEFAULT_VECTOR_LIMIT:
            settings["max_limit_for_vector_search_queries"] = int(limit)
        if exact:
            settings["use_skip_indexes"] = 0  # no index: a full scan, the exact answer
        elif width:
            settings["hnsw_candidate_list_size_for_search"] = int(width)
        return settings

    text_index_kind = "text"
    # The first release whose `text` index answers hasAnyTokens / hasAllTokens (older servers search
    # words with token functions over every row).
    TEXT_INDEX_SINCE = (26, 2)

    def text_index_sql(self, database: str, table: str, version: str) -> str | None:
        if version_tuple(version) < self.TEXT_INDEX_SINCE:
            return None
        # The index lower-cases what it stores (search_text already is), as the query's words are.
        return (f"ALTER TABLE {table_ref(database, table)} ADD INDEX IF NOT EXISTS "
                f"{quote_identifier(TEXT_INDEX_NAME)} search_text "
                "TYPE text(tokenizer = splitByNonAlpha, preprocessor = lower(search_text))")


class MyScaleDialect(Dialect):
    """MyScale: `distance()` takes its metric from the table's vector index (metric_type=Cosine)."""

    name = "myscale"
    distance_function = "distance"

    def add_index_sql(self, database: str, table: str, dim: int, index_type: str = "MSTG") -> str:
        kind = quote_identifier(index_type).strip("`")  # a bare word such as MSTG, SCANN, HNSWFLAT
        return (f"ALTER TABLE {table_ref(database, table)} ADD VECTOR INDEX {quote_identifier(INDEX_NAME)} "
                f"photo_embed TYPE {kind}('metric_type=Cosine')")

    def wait_index_sql(self, database: str, table: str) -> str | None:
        return f"SYSTEM WAIT BUILDING VECTOR INDICES {table_ref(database, table)}"

    def drop_index_sql(self, database: str, table: str) -> str:
        return f"ALTER TABLE {table_ref(database, table)} DROP VECTOR INDEX {quote_identifier(INDEX_NAME)}"

    def index_status_sql(self) -> str:
        return f"SELECT type, status, latest_fail_reason FROM system.vector_indices {_STATUS_PARAMS}"

    def index_status(self, read: ReadRows, params: dict[str, Any], has_rows: Callable[[], bool]) -> dict[str, Any]:
        rows = read("index status", self.index_status_sql(), params)
        if not rows:
            return absent_index()
        kind, status, reason = rows[0]
        return {"status": str(status), "type": str(kind), "fail_reason": reason or None, "name": INDEX_NAME}

    text_index_kind = "fts"

    def text_index_sql(self, database: str, table: str, version: str) -> str | None:
        # MyScale 1.5+: a Tantivy index. Its "simple" tokenizer splits on non-alphanumerics, as
        # splitByNonAlpha does, and it is case-insensitive unless told otherwise.
        return (f"ALTER TABLE {table_ref(database, table)} ADD INDEX IF NOT EXISTS "
                f"{quote_identifier(TEXT_INDEX_NAME)} search_text "
                """TYPE fts('{"search_text":{"tokenizer":{"type":"simple"}}}') GRANULARITY 1""")

    def text_score(self, column: str, param: str) -> str | None:
        # BM25 from the fts index; the words are joined by spaces and read as plain words (no
        # natural-language operators), any of them matching.
        return f"TextSearch('enable_nlq=false', 'operator=OR')({column}, {{{param}:String}})"

    # search_settings: none. MyScale's search parameters live in the index definition, and an unknown
    # setting (any of ClickHouse's) is an error there.


def version_tuple(version: str) -> tuple[int, ...]:
    """"26.9.2.1" as (26, 9, 2, 1); the leading numbers only, () when there are none."""
    numbers = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


CLICKHOUSE = ClickHouseDialect()
MYSCALE = MyScaleDialect()


def dialect_for(has_vector_indices: bool) -> Dialect:
    # MyScale is the ClickHouse fork with its own vector indices, listed in system.vector_indices.
    return MYSCALE if has_vector_indices else CLICKHOUSE
