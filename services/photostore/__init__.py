"""Store access: the only module that imports clickhouse_connect.

One URL (`STORE_URL`, a clickhouse-connect DSN such as `http://user:pass@host:8123/database`) picks the
server: the embedded store (`services/embedded_store/`), MyScale or ClickHouse. All three speak the ClickHouse
HTTP interface, so the same client code reaches them; what differs is the SQL dialect of vector search
and of its index, which is decided once, by asking the server (`Dialect`, `dialect_for`).

The table keeps the seed's columns (`id`, `photo_id`, `photo_image_url`, `photo_embed` with a length
constraint) plus the Unsplash metadata of `METADATA_FIELDS` and `inserted_at`. Which model made the
vectors is recorded in a small `<table>_meta` table (model name, dimension): a table holds the vectors
of one model only, and `ensure_table` refuses another one with `ModelMismatch`, whose message says how
to re-index.

Vector index. ClickHouse (and the embedded store): `vector_similarity('hnsw', 'cosineDistance', dim)`,
added to a filled table and then materialised (`build_index`); MyScale: `ADD VECTOR INDEX ... TYPE
MSTG` (or `STORE_INDEX_TYPE`, e.g. SCANN on open-source MyScaleDB), status from `system.vector_indices`.
Building costs about 1,350 rows/s on 2 cores and merges rebuild it, so the index is built after bulk
ingestion, not kept during it (`bench/store.py` measures both). Search is exact (a full scan, which
is the exact answer) while the table has fewer than `exact_below` rows, and indexed above it; the
search width (`hnsw_candidate_list_size_for_search`) is a setting. The index only answers queries
shaped `ORDER BY <distance> LIMIT k` with k <= `max_limit_for_vector_search_queries`: we keep that
shape (no tie-breaker column in the ORDER BY; ties are ordered here) and raise the limit per query.

Duplicates. The engine is `ReplacingMergeTree(inserted_at) ORDER BY photo_id`: writing a photo twice
(a retried ingest task) leaves two rows until a background merge keeps the newest. Point reads (get
by id, count, random) use `FINAL`, so they see one row per photo_id. The search path does not: it
over-fetches a few rows and keeps the first (closest) row of each photo_id here. Both versions of a
photo come from the same image and model (the table refuses other models), so their vectors are the
same and which one wins does not change the answer; metadata may be the older version's until the
merge. Why not FINAL on the search path: on chDB 26.9 a FINAL search still uses the index (checked with
`EXPLAIN indexes = 1`; `use_skip_indexes_if_final` is on there), but that setting's default and its
exact mode differ between ClickHouse versions, and MyScale does not document FINAL with its vector
search; the plain `ORDER BY distance LIMIT k` shape is the one every server answers from the index.
Duplicates are rare anyway: the worker skips photo_ids that are already stored. Also found there: a
tie-breaking column in the ORDER BY (`ORDER BY dist, photo_id`) silently turns the index off, so ties
are ordered here. Deletes are lightweight `DELETE FROM` (gone for every reader at once).

Every value reaches the server as a bound parameter (`{name:Type}`) or a query setting; only
identifiers (validated against a strict pattern) and integers (the vector dimension) are written into
SQL text.

Thread safety: clickhouse-connect clients must not run concurrent queries in one session, so each
thread gets its own client (no session id; they share the driver's connection pool).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse, urlunparse

import numpy as np

from services.common.errors import BadRequest, DependencyFailed, DependencyUnavailable
from services.common.schemas import METADATA_FIELDS, PhotoRecord

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# ClickHouse's UNKNOWN_TABLE: reads before the first ingest answer "nothing yet", not an error.
_UNKNOWN_TABLE = 60

# Column types of the metadata fields. LowCardinality where few distinct values repeat (countries,
# cities); usernames and free text are high-cardinality and stay plain String. photo_submitted_at is
# kept as the source's ISO 8601 text, which orders correctly for range filters and round-trips exactly.
METADATA_TYPES: dict[str, str] = {
    "photo_url": "String",
    "photo_description": "String",
    "ai_description": "String",
    "photographer_username": "String",
    "photographer_first_name": "String",
    "photographer_last_name": "String",
    "photo_width": "UInt32",
    "photo_height": "UInt32",
    "photo_aspect_ratio": "Float64",
    "photo_location_name": "String",
    "photo_location_country": "LowCardinality(String)",
    "photo_location_city": "LowCardinality(String)",
    "photo_submitted_at": "String",
}
_NUMERIC_TYPES = {"UInt32", "UInt64", "Int64", "Float32", "Float64"}

# Columns a search result or a photo lookup returns, in order.
PHOTO_COLUMNS: tuple[str, ...] = ("photo_id", "photo_image_url", *METADATA_FIELDS)
# Columns a caller may filter on.
FILTER_COLUMNS: tuple[str, ...] = ("photo_id", *METADATA_FIELDS)
_FILTER_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def column_type(name: str) -> str:
    if name in ("photo_id", "photo_image_url"):
        return "String"
    # A metadata field added to the schema without a type here still works, as text.
    return METADATA_TYPES.get(name, "String")


class StoreError(DependencyFailed):
    """The store refused or failed a call (502 at a gateway); the message is a sentence for a person."""

    code = "store_error"


class StoreUnavailable(StoreError, DependencyUnavailable):
    """The store cannot be reached (connection refused, timeout): 503 with Retry-After."""

    status_code = 503
    code = "store_unavailable"


class ModelMismatch(StoreError):
    """The table holds vectors of another model or dimension (409): the message says how to re-index."""

    status_code = 409
    code = "model_mismatch"


class InvalidFilter(BadRequest):
    """A search filter names an unknown column or an operator that does not fit it (422)."""

    code = "invalid_filter"


# --- dialects -------------------------------------------------------------------------------------


INDEX_NAME = "photo_embed_index"
# Defaults chosen from bench/results/store-*.json (bench/store.py, 2 shared cores): an exact top-10 took
# about 70 ms at 25,000 rows and 0.8-1 s at 200,000, the indexed one 26-40 ms at both. Below 50,000 rows
# the exact scan is fast enough and exact; above it the index answers. Width 256 (ClickHouse's default)
# kept recall@10 at 0.99 on clustered, CLIP-like vectors at 25x the exact speed at 200,000 rows; 64 was
# as good there, but uniform vectors need more (0.987 at 256 at 25,000 rows), so 256 leaves a margin.
DEFAULT_EXACT_BELOW = 50_000
DEFAULT_SEARCH_WIDTH = 256
# Deepest result a search may reach (offset + top_k).
MAX_RESULTS = 10_000
# ClickHouse refuses vector-index queries whose LIMIT is above this setting (default 1000); we raise it
# per query instead of refusing, since a deep page is the caller's choice and still correct.
_CLICKHOUSE_DEFAULT_VECTOR_LIMIT = 1000
# The index states, in MyScale's words (system.vector_indices); ClickHouse's are mapped onto them.
INDEX_ABSENT, INDEX_NOT_BUILT, INDEX_IN_PROGRESS, INDEX_BUILT = "Absent", "NotBuilt", "InProgress", "Built"


@dataclass(frozen=True)
class Dialect:
    """What differs between servers; the one place that switches on the kind of server."""

    name: str  # "clickhouse" (also the embedded store) or "myscale"
    # The distance function whose value is cosine distance (1 - cosine similarity). MyScale's
    # `distance()` takes its metric from the table's vector index (MSTG, metric_type=Cosine).
    distance_function: str

    @property
    def is_myscale(self) -> bool:
        return self.name == "myscale"

    def distance(self, column: str, param: str) -> str:
        return f"{self.distance_function}({column}, {{{param}:Array(Float32)}})"

    # -- the vector index ------------------------------------------------------------------------

    def add_index_sql(self, database: str, table: str, dim: int, index_type: str = "MSTG") -> str:
        ref, name = table_ref(database, table), quote_identifier(INDEX_NAME)
        if self.is_myscale:
            kind = quote_identifier(index_type).strip("`")  # a bare word such as MSTG, SCANN, HNSWFLAT
            return f"ALTER TABLE {ref} ADD VECTOR INDEX {name} photo_embed TYPE {kind}('metric_type=Cosine')"
        dim = _check_dim(dim)
        return (f"ALTER TABLE {ref} ADD INDEX IF NOT EXISTS {name} photo_embed "
                f"TYPE vector_similarity('hnsw', 'cosineDistance', {dim})")

    def build_index_sql(self, database: str, table: str) -> str | None:
        """What builds the index over rows that were there before it (None: adding it is enough)."""
        if self.is_myscale:
            return None  # MyScale builds in the background; wait_index_sql waits for it
        return f"ALTER TABLE {table_ref(database, table)} MATERIALIZE INDEX {quote_identifier(INDEX_NAME)}"

    def wait_index_sql(self, database: str, table: str) -> str | None:
        if self.is_myscale:
            return f"SYSTEM WAIT BUILDING VECTOR INDICES {table_ref(database, table)}"
        return None  # MATERIALIZE INDEX with mutations_sync=2 returns when it is done

    def drop_index_sql(self, database: str, table: str) -> str:
        ref, name = table_ref(database, table), quote_identifier(INDEX_NAME)
        if self.is_myscale:
            return f"ALTER TABLE {ref} DROP VECTOR INDEX {name}"
        return f"ALTER TABLE {ref} DROP INDEX IF EXISTS {name}"

    def index_status_sql(self) -> str:
        """The index's row, binding db, table and name: MyScale (type, status, fail reason); ClickHouse
        (type, bytes built), whose state PhotoStore.index_status completes from system.mutations."""
        if self.is_myscale:
            return ("SELECT type, status, latest_fail_reason FROM system.vector_indices "
                    "WHERE database = {db:String} AND table = {table:String} AND name = {name:String}")
        return ("SELECT type, data_compressed_bytes FROM system.data_skipping_indices "
                "WHERE database = {db:String} AND table = {table:String} AND name = {name:String}")


    # -- search settings -------------------------------------------------------------------------

    def search_settings(self, limit: int, *, exact: bool, width: int | None) -> dict[str, Any]:
        """Query settings of one search: exact or indexed, the search width, the top-k limit."""
        if self.is_myscale:
            # MyScale's search parameters live in the index definition; with an index it is indexed.
            return {}
        settings: dict[str, Any] = {}
        if limit > _CLICKHOUSE_DEFAULT_VECTOR_LIMIT:
            settings["max_limit_for_vector_search_queries"] = int(limit)
        if exact:
            settings["use_skip_indexes"] = 0  # no index: a full scan, the exact answer
        elif width:
            settings["hnsw_candidate_list_size_for_search"] = int(width)
        return settings


def index_mutations_sql() -> str:
    """ClickHouse: unfinished mutations that build the index, and the latest failure's reason."""
    return ("SELECT countIf(NOT is_done), argMax(latest_fail_reason, create_time) FROM system.mutations "
            "WHERE database = {db:String} AND table = {table:String} AND position(command, {name:String}) > 0")


CLICKHOUSE = Dialect(name="clickhouse", distance_function="cosineDistance")
MYSCALE = Dialect(name="myscale", distance_function="distance")


def dialect_for(has_vector_indices: bool) -> Dialect:
    # MyScale is the ClickHouse fork with its own vector indices, listed in system.vector_indices.
    return MYSCALE if has_vector_indices else CLICKHOUSE


# --- SQL builders (pure; unit-tested without a server) --------------------------------------------


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name or ""):
        raise ValueError(
            f"{name!r} is not a valid table or database name: use letters, digits and underscores, "
            "starting with a letter or underscore."
        )
    return f"`{name}`"


def table_ref(database: str, table: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"


def create_table_sql(database: str, table: str, dim: int) -> str:
    dim = _check_dim(dim)
    columns = [
        "id UInt64",
        "photo_id String",
        "photo_image_url String",
        "photo_embed Array(Float32)",
        *(f"{name} {column_type(name)}" for name in METADATA_FIELDS),
        "inserted_at DateTime64(3) DEFAULT now64(3)",
        # `dim` is an int checked above; DDL cannot take bound parameters.
        f"CONSTRAINT vector_len CHECK length(photo_embed) = {dim}",
    ]
    body = ",\n    ".join(columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {table_ref(database, table)}\n(\n    {body}\n)\n"
        "ENGINE = ReplacingMergeTree(inserted_at)\nORDER BY photo_id"
    )


def create_meta_sql(database: str, table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table_ref(database, meta_table_name(table))}\n"
        "(\n    model String,\n    dim UInt32,\n    created_at DateTime64(3) DEFAULT now64(3)\n)\n"
        "ENGINE = MergeTree\nORDER BY created_at"
    )


def meta_table_name(table: str) -> str:
    return f"{table}_meta"


def table_exists_sql() -> str:
    return "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}"


def read_meta_sql(database: str, table: str) -> str:
    # The first record wins: if two processes raced to create the table, the later one sees the
    # earlier one's model and refuses, instead of both believing they own it.
    return f"SELECT model, dim FROM {table_ref(database, meta_table_name(table))} ORDER BY created_at LIMIT 1"


def search_sql(dialect: Dialect, database: str, table: str, *, filters: Mapping[str, Any] | None = None,
               exclude_photo_id: str | None = None, with_vector: bool = False) -> tuple[str, dict[str, Any]]:
    """SELECT of the nearest photos; returns (sql, params without `q` and `k`, which the caller binds).

    The shape is exactly `ORDER BY dist LIMIT k`, which is what vector indexes recognise: no FINAL
    (duplicates are folded by the caller), no tie-breaking column (ties are ordered by the caller), and
    `min_score` applied by the caller to the rows, which arrive best first.
    """
    where, params = filter_sql(filters)
    if exclude_photo_id is not None:
        where.append("photo_id != {exclude_photo_id:String}")
        params["exclude_photo_id"] = exclude_photo_id
    distance = dialect.distance("photo_embed", "q")
    columns = [*PHOTO_COLUMNS, *(["photo_embed"] if with_vector else [])]
    sql = (
        f"SELECT {', '.join(columns)}, {distance} AS dist\n"
        f"FROM {table_ref(database, table)}\n"
        + (f"WHERE {' AND '.join(where)}\n" if where else "")
        + "ORDER BY dist ASC\nLIMIT {k:UInt32}"
    )
    return sql, params


def filter_sql(filters: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """WHERE conditions and their bound values for a filters mapping.

    {"photo_location_country": "Spain"}                   equality
    {"photo_location_country": ["Spain", "France"]}       one of
    {"photo_width": {"gte": 100, "lt": 4000}}             ranges (eq, ne, gt, gte, lt, lte)
    {"photo_description": {"contains": "beach"}}          text contains, case-insensitive
    """
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if not filters:
        return conditions, params
    if not isinstance(filters, Mapping):
        raise InvalidFilter("filters must be an object mapping a column name to a value or to operators.")
    for column, spec in filters.items():
        if column not in FILTER_COLUMNS:
            raise InvalidFilter(
                f"Cannot filter on {column!r}: filters accept only {', '.join(FILTER_COLUMNS)}."
            )
        numeric = column_type(column) in _NUMERIC_TYPES
        bind_type = "Float64" if numeric else "String"
        if isinstance(spec, Mapping):
            if not spec:
                raise InvalidFilter(f"The filter on {column!r} has no operator.")
            for op, value in spec.items():
                name = f"f{len(params)}"
                if op == "contains":
                    if numeric:
                        raise InvalidFilter(f"'contains' works on text columns; {column!r} is a number.")
                    params[name] = _filter_value(column, value, numeric=False)
                    conditions.append(f"positionCaseInsensitiveUTF8({column}, {{{name}:String}}) > 0")
                elif op == "in":
                    params[name] = _filter_values(column, value, numeric)
                    conditions.append(f"{column} IN {{{name}:Array({bind_type})}}")
                elif op in _FILTER_OPS:
                    params[name] = _filter_value(column, value, numeric)
                    conditions.append(f"{column} {_FILTER_OPS[op]} {{{name}:{bind_type}}}")
                else:
                    raise InvalidFilter(
                        f"Unknown filter operator {op!r} on {column!r}: use one of "
                        f"{', '.join([*_FILTER_OPS, 'in', 'contains'])}."
                    )
        elif isinstance(spec, (list, tuple)):
            name = f"f{len(params)}"
            params[name] = _filter_values(column, spec, numeric)
            conditions.append(f"{column} IN {{{name}:Array({bind_type})}}")
        else:
            name = f"f{len(params)}"
            params[name] = _filter_value(column, spec, numeric)
            conditions.append(f"{column} = {{{name}:{bind_type}}}")
    return conditions, params


def _filter_value(column: str, value: Any, numeric: bool) -> Any:
    if numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise InvalidFilter(f"The filter on {column!r} needs a number, not {value!r}.")
        return float(value)
    if not isinstance(value, str):
        raise InvalidFilter(f"The filter on {column!r} needs text, not {value!r}.")
    return value


def _filter_values(column: str, values: Any, numeric: bool) -> list[Any]:
    if not isinstance(values, (list, tuple)) or not values:
        raise InvalidFilter(f"The filter on {column!r} needs a non-empty list of values.")
    return [_filter_value(column, value, numeric) for value in values]


def photo_sql(database: str, table: str, with_vector: bool = False) -> str:
    columns = ", ".join([*PHOTO_COLUMNS, *(["photo_embed"] if with_vector else [])])
    return f"SELECT {columns} FROM {table_ref(database, table)} FINAL WHERE photo_id = {{photo_id:String}} LIMIT 1"


def random_photo_sql(database: str, table: str, where: Sequence[str] = ()) -> str:
    """One photo drawn at random among those meeting `where` (from `filter_sql`; all when empty).
    A full scan; fine at the seed's size. Sampling by id range would be the next step at millions."""
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {', '.join(PHOTO_COLUMNS)} FROM {table_ref(database, table)} FINAL{condition} ORDER BY rand() LIMIT 1"


def count_sql(database: str, table: str) -> str:
    return f"SELECT count() FROM {table_ref(database, table)} FINAL"


def row_count_sql(database: str, table: str) -> str:
    # Without FINAL: rows on disk, read from part metadata; what decides exact or indexed search.
    return f"SELECT count() FROM {table_ref(database, table)}"


def delete_sql(database: str, table: str) -> str:
    # A lightweight delete: rows vanish from every reader at once, the disk space goes at the next merge.
    return f"DELETE FROM {table_ref(database, table)} WHERE photo_id IN {{photo_ids:Array(String)}}"


def existing_ids_sql(database: str, table: str) -> str:
    # No FINAL: a duplicate row still proves the photo is stored, and DISTINCT folds it.
    return (f"SELECT DISTINCT photo_id FROM {table_ref(database, table)} "
            "WHERE photo_id IN {photo_ids:Array(String)}")


# Columns whose values a person picks from a list (the page's filters): names, not free text.
FACET_COLUMNS: tuple[str, ...] = ("photo_location_country", "photo_location_city", "photographer_username")


def facet_sql(database: str, table: str, column: str) -> str:
    """The most common values of one text column, with how many photos have each. `column` must be one
    of FACET_COLUMNS (checked by the caller: identifiers cannot be bound). uniqExact(photo_id) counts
    a photo once even before a merge folds its duplicate rows."""
    return (f"SELECT {column} AS value, uniqExact(photo_id) AS photos FROM {table_ref(database, table)} "
            f"WHERE {column} != '' GROUP BY {column} ORDER BY photos DESC, value LIMIT {{limit:UInt32}}")


def stable_id(photo_id: str) -> int:
    """A 64-bit id that depends only on photo_id, so re-ingesting a photo gives it the same id."""
    return int.from_bytes(hashlib.blake2b(photo_id.encode("utf-8"), digest_size=8).digest(), "big")


def _check_count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not least <= value <= MAX_RESULTS:
        raise BadRequest(f"{name} must be a whole number from {least} to {MAX_RESULTS}, not {value!r}.")
    return int(value)


def _int_option(value: int | None, env: str, default: int) -> int:
    if value is None:
        text = os.environ.get(env, "").strip()
        try:
            value = int(text) if text else default
        except ValueError:
            raise ValueError(f"{env} must be a whole number, not {text!r}.") from None
    if isinstance(value, bool) or int(value) < 0:
        raise ValueError(f"{env} must be a whole number of 0 or more, not {value!r}.")
    return int(value)


def collapse_near_duplicates(vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices of the rows to keep, best first: a row goes if its cosine similarity to a row already
    kept is `threshold` or more (the same photo uploaded twice, bursts of nearly identical shots)."""
    kept: list[int] = []
    if len(vectors) == 0:
        return kept
    unit = np.asarray(vectors, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    for i in range(len(unit)):
        if not kept or float(np.max(unit[kept] @ unit[i])) < threshold:
            kept.append(i)
    return kept


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < int(dim) <= 65536:
        raise ValueError(f"The vector dimension must be a positive integer, not {dim!r}.")
    return int(dim)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username or ''}:***@{parsed.hostname or ''}"
    if parsed.port:
        netloc += f":{parsed.port}"
    return urlunparse(parsed._replace(netloc=netloc))


def server_message(error: Exception) -> str:
    """The server's sentence from a clickhouse-connect error, without the driver's wrapping."""
    text = str(error)
    marker = "server response:"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = re.sub(r"\s*\(for url [^)]*\)\s*$", "", text)
    text = re.sub(r"\s*\(version [^)]*(\([^)]*\))?[^)]*\)\s*$", "", text)
    text = " ".join(text.split())
    return text[:500] + ("..." if len(text) > 500 else "")


# --- the store ------------------------------------------------------------------------------------


class PhotoStore:
    """Photos and their vectors in one table of a ClickHouse-compatible server."""

    def __init__(self, url: str, table: str = "photos", *, connect_timeout: float = 5, query_timeout: float = 30,
                 exact_below: int | None = None, search_width: int | None = None, index_type: str | None = None):
        self.url = url.strip().rstrip("/")
        self.safe_url = redact_url(self.url)
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"STORE_URL must be an http(s) URL such as http://127.0.0.1:8123, not {self.safe_url!r}.")
        database = unquote(parsed.path.lstrip("/").split("/")[0]) if parsed.path else ""
        self.database = database or "default"
        self.table = table
        quote_identifier(self.database)
        quote_identifier(self.table)
        quote_identifier(meta_table_name(self.table))
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[Any] = []
        self._dialect: Dialect | None = None
        self._server_version: str | None = None
        self._info: dict[str, Any] | None = None
        # Search options; the environment gives the defaults (bench/store.py chose them, see DEFAULT_*).
        self.exact_below = _int_option(exact_below, "STORE_EXACT_BELOW", DEFAULT_EXACT_BELOW)
        self.search_width = _int_option(search_width, "STORE_SEARCH_WIDTH", DEFAULT_SEARCH_WIDTH)
        self.index_type = index_type or os.environ.get("STORE_INDEX_TYPE") or "MSTG"
        quote_identifier(self.index_type)
        self._rows_seen: tuple[float, int] | None = None  # (monotonic time, rows) of the last row count

    # -- connection ------------------------------------------------------------------------------

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        import clickhouse_connect  # imported here so importing this module stays cheap

        try:
            client = clickhouse_connect.get_client(
                dsn=self.url,
                database=self.database,
                connect_timeout=self.connect_timeout,
                send_receive_timeout=self.query_timeout,
                # Sessions make a client refuse concurrent queries; we need none (no temp tables, no SET).
                autogenerate_session_id=False,
                show_clickhouse_errors="scrub",
                client_name="imagesearch",
            )
        except Exception as error:  # noqa: BLE001 - mapped to our errors, with the cause kept
            raise self._translate(error, "connect") from error
        self._local.client = client
        with self._lock:
            self._clients.append(client)
        return client

    def _translate(self, error: Exception, action: str) -> StoreError:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
        from urllib3.exceptions import HTTPError

        if isinstance(error, StoreError):
            return error
        cause = error.__cause__ or error.__context__
        if isinstance(error, HTTPError) or (isinstance(error, OperationalError) and isinstance(cause, HTTPError)) \
                or isinstance(error, (ConnectionError, TimeoutError)):
            return StoreUnavailable(
                f"The photo store at {self.safe_url} cannot be reached ({action} failed: "
                f"{type(cause or error).__name__}). Check that it is running and that STORE_URL is right."
            )
        if isinstance(error, OperationalError):
            # Without a transport cause: the server kept answering 429/503/504, or a stream broke midway.
            return StoreUnavailable(
                f"The photo store at {self.safe_url} is unavailable ({action}): {server_message(error)}"
            )
        if isinstance(error, DatabaseError):
            result = StoreError(f"The photo store refused the {action}: {server_message(error)}")
            result.server_code = getattr(error, "code", None)  # type: ignore[attr-defined]
            return result
        return StoreError(f"The photo store {action} failed: {type(error).__name__}: {error}")

    def _query(self, action: str, sql: str, params: dict[str, Any] | None = None,
               settings: dict[str, Any] | None = None):
        try:
            return self._client().query(sql, parameters=params or {}, settings=settings or None)
        except Exception as error:  # noqa: BLE001
            raise self._translate(error, action) from error

    def _command(self, action: str, sql: str, params: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None):
        try:
            return self._client().command(sql, parameters=params or {}, settings=settings or None)
        except Exception as error:  # noqa: BLE001
            raise self._translate(error, action) from error

    @staticmethod
    def _is_unknown_table(error: StoreError) -> bool:
        return getattr(error, "server_code", None) == _UNKNOWN_TABLE or "UNKNOWN_TABLE" in error.message

    @property
    def dialect(self) -> Dialect:
        """The server's SQL dialect, asked once: MyScale lists its vector indices in system.vector_indices."""
        if self._dialect is None:
            version = self._query("version check", "SELECT version()").result_rows[0][0]
            rows = self._query("dialect check", table_exists_sql(),
                               {"db": "system", "name": "vector_indices"}).result_rows
            dialect = dialect_for(bool(rows[0][0]))
            logger.info("store %s: server version %s, dialect %s", self.safe_url, version, dialect.name)
            self._server_version = str(version)
            self._dialect = dialect
        return self._dialect

    # -- table -----------------------------------------------------------------------------------

    def _table_exists(self, table: str) -> bool:
        rows = self._query("table check", table_exists_sql(), {"db": self.database, "name": table}).result_rows
        return bool(rows[0][0])

    def table_info(self) -> dict[str, Any] | None:
        """{"model": str, "dim": int} of the existing table, or None if there is no table yet."""
        if not self._table_exists(self.table):
            return None
        try:
            rows = self._query("model lookup", read_meta_sql(self.database, self.table)).result_rows
        except StoreError as error:
            if not self._is_unknown_table(error):
                raise
            rows = []
        if not rows:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} exists but has no record of the model that made its "
                f"vectors ({self.database}.{meta_table_name(self.table)} is missing or empty). "
                + self._reindex_hint()
            )
        info = {"model": str(rows[0][0]), "dim": int(rows[0][1]), "table": self.table,
                "database": self.database, "dialect": self.dialect.name}
        self._info = info
        return dict(info)

    def ensure_table(self, dim: int, model: str) -> None:
        """Create the table if missing (idempotent); refuse (ModelMismatch) if it exists for another model/dim."""
        dim = _check_dim(dim)
        if not isinstance(model, str) or not model.strip():
            raise ValueError("ensure_table needs the name of the model that makes the vectors.")
        info = self.table_info()
        if info is None:
            self._command("table creation", create_meta_sql(self.database, self.table))
            rows = self._query("model lookup", read_meta_sql(self.database, self.table)).result_rows
            if not rows:
                self._insert("model record", meta_table_name(self.table), [[model], [dim]],
                             ["model", "dim"], ["String", "UInt32"])
                rows = self._query("model lookup", read_meta_sql(self.database, self.table)).result_rows
            info = {"model": str(rows[0][0]), "dim": int(rows[0][1])}
        if info["model"] != model or info["dim"] != dim:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} holds {info['dim']}-dimensional vectors of model "
                f"{info['model']!r}, not {dim}-dimensional vectors of {model!r}; vectors of two models never "
                f"mix. " + self._reindex_hint()
            )
        # Also after a crash between recording the model and creating the table.
        self._command("table creation", create_table_sql(self.database, self.table, dim))
        self._info = {"model": model, "dim": dim, "table": self.table, "database": self.database,
                      "dialect": self.dialect.name}
        logger.info("store table %s.%s ready for %s (%d dims)", self.database, self.table, model, dim)

    def _reindex_hint(self) -> str:
        meta = f"{self.database}.{meta_table_name(self.table)}"
        return (f"To re-index with the new model: set STORE_TABLE to a new table name (or drop "
                f"{self.database}.{self.table} and {meta}) for the gateway and the workers, restart them, and "
                "run the ingestion again (make ingest); the photos are embedded afresh from their URLs.")

    def _known_dim(self) -> int | None:
        if self._info is None:
            self.table_info()
        return self._info["dim"] if self._info else None

    # -- writes ----------------------------------------------------------------------------------

    def _insert(self, action: str, table: str, columns: list[list[Any]], names: list[str], types: list[str]):
        try:
            # Types given up front spare the driver a DESCRIBE round trip per insert.
            return self._client().insert(table, columns, column_names=names, database=self.database,
                                         column_type_names=types, column_oriented=True)
        except Exception as error:  # noqa: BLE001
            raise self._translate(error, action) from error

    def insert_photos(self, photos: Sequence[PhotoRecord | Mapping[str, Any]], vectors: np.ndarray,
                      ids: Sequence[int] | None = None) -> int:
        """One batched insert; returns rows written. `vectors` is (n, dim) float32, unit length."""
        records = [p if isinstance(p, PhotoRecord) else PhotoRecord.model_validate(p) for p in photos]
        if not records:
            return 0
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(records):
            raise ValueError(f"Expected {len(records)} vectors as an (n, dim) array, got shape {matrix.shape}.")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("Vectors must be finite numbers (no NaN or infinity).")
        dim = self._known_dim()
        if dim is None:
            raise StoreError(f"The table {self.database}.{self.table} does not exist yet: call ensure_table first.")
        if matrix.shape[1] != dim:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} holds {dim}-dimensional vectors; these have "
                f"{matrix.shape[1]}. " + self._reindex_hint()
            )
        if ids is not None and len(ids) != len(records):
            raise ValueError(f"Expected {len(records)} ids, got {len(ids)}.")
        row_ids = [int(i) for i in ids] if ids is not None else [stable_id(r.photo_id) for r in records]
        names = ["id", "photo_id", "photo_image_url", "photo_embed", *METADATA_FIELDS]
        types = ["UInt64", "String", "String", "Array(Float32)", *(column_type(f) for f in METADATA_FIELDS)]
        columns: list[list[Any]] = [
            row_ids,
            [r.photo_id for r in records],
            [r.photo_image_url for r in records],
            # Plain lists encode several times faster than lists of numpy rows (DESIGN.md).
            matrix.tolist(),
            *([getattr(r, field) for r in records] for field in METADATA_FIELDS),
        ]
        self._insert("insert", self.table, columns, names, types)
        return len(records)

    # -- reads -----------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, top_k: int = 10, min_score: float | None = None,
               filters: dict[str, Any] | None = None, exclude_photo_id: str | None = None, *,
               offset: int = 0, collapse: float | None = None, exact: bool | None = None,
               search_width: int | None = None) -> list[dict[str, Any]]:
        """Nearest photos by cosine distance; each dict has photo_id, photo_image_url, score (cosine similarity),
        rank (1-based, counting from the first page) and the metadata fields. No table yet: no results.

        `offset` skips that many results (pagination). `collapse` (a cosine similarity, e.g. 0.98) drops a
        result that close to a better one. `exact` forces a full scan (True) or the index (False); by
        default the search is exact below `exact_below` rows. `search_width` overrides the index's
        candidate list size for this query."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.size == 0 or not np.all(np.isfinite(query)):
            raise BadRequest("The query vector must be a non-empty list of finite numbers.")
        top_k, offset = _check_count("top_k", top_k, 1), _check_count("offset", offset, 0)
        if top_k + offset > MAX_RESULTS:
            raise BadRequest(f"offset + top_k must be at most {MAX_RESULTS}, not {offset + top_k}.")
        if collapse is not None and (isinstance(collapse, bool) or not -1.0 <= float(collapse) <= 1.0):
            raise BadRequest(f"collapse must be a cosine similarity between -1 and 1, not {collapse!r}.")
        if search_width is not None:
            search_width = _check_count("search_width", search_width, 1)
        sql, params = search_sql(self.dialect, self.database, self.table, filters=filters,
                                 exclude_photo_id=exclude_photo_id, with_vector=collapse is not None)
        dim = self._known_dim()
        if dim is None:
            return []
        if query.size != dim:
            raise ModelMismatch(
                f"The query vector has {query.size} dimensions but the table {self.database}.{self.table} holds "
                f"{dim}-dimensional vectors: the embedder and the table use different models. Search with "
                f"the model that made the table, or re-index with this one into a new table (STORE_TABLE).")
        if exact is None:
            exact = self._row_count() < self.exact_below
        wanted = offset + top_k
        # Over-fetch: duplicate versions of a photo (until a merge) and collapsed neighbours take places.
        fetch = min(MAX_RESULTS, wanted * (3 if collapse is not None else 1) + max(4, wanted // 10))
        params["q"] = query.tolist()
        while True:
            params["k"] = fetch
            settings = self.dialect.search_settings(fetch, exact=exact, width=search_width or self.search_width)
            try:
                rows = self._query("search", sql, params, settings).result_rows
            except StoreError as error:
                if self._is_unknown_table(error):
                    self._info = None
                    return []
                raise
            photos = self._search_rows(rows, with_vector=collapse is not None)
            if collapse is not None:
                keep = collapse_near_duplicates(np.array([p.pop("vector") for p in photos], dtype=np.float32)
                                                if photos else np.zeros((0, dim), np.float32), float(collapse))
                photos = [photos[i] for i in keep]
            if len(photos) >= wanted or len(rows) < fetch or fetch >= MAX_RESULTS:
                break
            fetch = min(MAX_RESULTS, fetch * 2)
        results = []
        for photo in photos[:wanted]:
            if min_score is not None and photo["score"] < min_score:
                break  # best first: the rest score lower still
            photo["rank"] = len(results) + 1
            results.append(photo)
        return results[offset:]

    @staticmethod
    def _search_rows(rows: Sequence[Sequence[Any]], with_vector: bool) -> list[dict[str, Any]]:
        """Rows as photos, best first, one per photo_id; equal scores in photo_id order."""
        ordered = sorted(rows, key=lambda row: (float(row[-1]), row[0]))
        photos: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in ordered:
            if row[0] in seen:
                continue  # an older version of a photo written twice, not merged yet
            seen.add(row[0])
            photo = dict(zip(PHOTO_COLUMNS, row))
            if with_vector:
                photo["vector"] = row[len(PHOTO_COLUMNS)]
            photo["score"] = 1.0 - float(row[-1])
            photos.append(photo)
        return photos

    def more_like(self, photo_id: str, top_k: int = 10, **options: Any) -> list[dict[str, Any]] | None:
        """Photos like a stored one, by its stored vector (no re-embedding); the photo itself is left out.
        None when there is no such photo."""
        photo = self.get_photo(photo_id, with_vector=True)
        if photo is None:
            return None
        return self.search(np.asarray(photo["vector"], dtype=np.float32), top_k=top_k,
                           exclude_photo_id=photo_id, **options)

    def explain_search(self, vector: np.ndarray, top_k: int = 10, *, exact: bool = False,
                       filters: dict[str, Any] | None = None) -> str:
        """The server's `EXPLAIN indexes = 1` of a search: shows whether the vector index is used."""
        sql, params = search_sql(self.dialect, self.database, self.table, filters=filters)
        params.update(q=np.asarray(vector, dtype=np.float32).reshape(-1).tolist(), k=int(top_k))
        settings = self.dialect.search_settings(int(top_k), exact=exact, width=self.search_width)
        rows = self._query("explain", "EXPLAIN indexes = 1 " + sql, params, settings).result_rows
        return "\n".join(str(row[0]) for row in rows)

    def _row_count(self) -> int:
        """Rows on disk (duplicates included), remembered for 30 s: what decides exact or indexed search."""
        now = time.monotonic()
        if self._rows_seen is None or now - self._rows_seen[0] > 30:
            rows = self._read_rows("row count", row_count_sql(self.database, self.table))
            self._rows_seen = (now, int(rows[0][0]) if rows else 0)
        return self._rows_seen[1]

    # -- the vector index ------------------------------------------------------------------------

    def build_index(self, wait: bool = True) -> dict[str, Any]:
        """Add the vector index (if missing) and build it over the rows already stored; with `wait`, return
        when it is built. Run it after bulk ingestion: rows inserted later are indexed as they arrive."""
        dim = self._known_dim()
        if dim is None:
            raise StoreError(f"The table {self.database}.{self.table} does not exist yet: ingest photos first.")
        dialect = self.dialect
        if self.index_status()["status"] == INDEX_ABSENT:
            self._command("index creation", dialect.add_index_sql(self.database, self.table, dim, self.index_type))
        build = dialect.build_index_sql(self.database, self.table)
        if build:
            # mutations_sync=2 waits for the mutation; without it the build goes on in the background.
            settings = {"mutations_sync": 2} if wait else {}
            self._command("index build", build, settings=settings)
        wait_sql = dialect.wait_index_sql(self.database, self.table)
        if wait and wait_sql:
            self._command("index build", wait_sql)
        status = self.index_status()
        if wait and status["status"] != INDEX_BUILT:
            raise StoreError(f"The vector index of {self.database}.{self.table} did not build: "
                             f"{status.get('fail_reason') or status['status']}.")
        return status

    def wants_index(self) -> bool:
        """Whether the table has outgrown exact search (`exact_below` rows) and has no vector index that
        is built or being built: what an ingest worker checks when a job ends."""
        if self._known_dim() is None or self._row_count_now() < self.exact_below:
            return False
        return self.index_status()["status"] in (INDEX_ABSENT, INDEX_NOT_BUILT)

    def index_status(self) -> dict[str, Any]:
        """{"status": Absent | NotBuilt | InProgress | Built, "type": ..., "fail_reason": ...}."""
        params = {"db": self.database, "table": self.table, "name": INDEX_NAME}
        rows = self._read_rows("index status", self.dialect.index_status_sql(), params)
        if not rows:
            return {"status": INDEX_ABSENT, "type": None, "fail_reason": None, "name": INDEX_NAME}
        if self.dialect.is_myscale:
            kind, status, reason = rows[0]
            return {"status": str(status), "type": str(kind), "fail_reason": reason or None, "name": INDEX_NAME}
        kind, built_bytes = rows[0]
        running, reason = self._query("index status", index_mutations_sql(), params).result_rows[0]
        if running:
            status = INDEX_IN_PROGRESS
        elif not built_bytes and self._row_count_now() > 0:
            status = INDEX_NOT_BUILT  # added over stored rows and never materialised
        else:
            status = INDEX_BUILT
        return {"status": status, "type": str(kind), "fail_reason": reason or None, "name": INDEX_NAME}

    def _row_count_now(self) -> int:
        self._rows_seen = None
        return self._row_count()

    def drop_index(self) -> None:
        """Remove the vector index; searches are then exact scans."""
        if self.index_status()["status"] != INDEX_ABSENT:
            self._command("index removal", self.dialect.drop_index_sql(self.database, self.table))

    # -- deletes ---------------------------------------------------------------------------------

    def delete_photos(self, photo_ids: Sequence[str]) -> int:
        """Delete photos by photo_id (every stored version); returns how many of them were stored."""
        wanted = list(dict.fromkeys(str(p) for p in photo_ids))
        if not wanted:
            return 0
        present = self.existing_ids(wanted)
        if present:
            self._command("delete", delete_sql(self.database, self.table), {"photo_ids": sorted(present)})
            self._rows_seen = None
        return len(present)

    def get_photo(self, photo_id: str, with_vector: bool = False) -> dict[str, Any] | None:
        rows = self._read_rows("photo lookup", photo_sql(self.database, self.table, with_vector),
                               {"photo_id": photo_id})
        if not rows:
            return None
        photo = dict(zip(PHOTO_COLUMNS, rows[0]))
        if with_vector:
            photo["vector"] = [float(x) for x in rows[0][len(PHOTO_COLUMNS)]]
        return photo

    def random_photo(self, filters: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A photo at random, among those matching `filters` (as in `search`); None when none does."""
        where, params = filter_sql(filters)
        rows = self._read_rows("random photo", random_photo_sql(self.database, self.table, where), params)
        return dict(zip(PHOTO_COLUMNS, rows[0])) if rows else None

    def count(self) -> int:
        rows = self._read_rows("count", count_sql(self.database, self.table))
        return int(rows[0][0]) if rows else 0

    def facet(self, column: str, limit: int = 100) -> list[dict[str, Any]]:
        """[{"value", "photos"}, ...]: the `limit` most common non-empty values of a FACET_COLUMNS column,
        most photos first. No table yet: []."""
        if column not in FACET_COLUMNS:
            raise BadRequest(f"Values can be listed for {', '.join(FACET_COLUMNS)}; not {column!r}.",
                             code="invalid_facet")
        limit = _check_count("limit", limit, 1)
        rows = self._read_rows("value listing", facet_sql(self.database, self.table, column), {"limit": limit})
        return [{"value": str(value), "photos": int(photos)} for value, photos in rows]

    def existing_ids(self, photo_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(str(p) for p in photo_ids))
        if not wanted:
            return set()
        rows = self._read_rows("lookup of stored photos", existing_ids_sql(self.database, self.table),
                               {"photo_ids": wanted})
        return {row[0] for row in rows}

    def _read_rows(self, action: str, sql: str, params: dict[str, Any] | None = None) -> list:
        """Rows of a read; before the first ingest there is no table, which reads as no rows."""
        try:
            return self._query(action, sql, params).result_rows
        except StoreError as error:
            if self._is_unknown_table(error):
                return []
            raise

    # -- lifecycle -------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the server answers; never raises."""
        try:
            return bool(self._client().ping())
        except Exception:  # noqa: BLE001 - a health check reports, it does not fail
            logger.debug("store ping failed", exc_info=True)
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                logger.debug("closing a store client failed", exc_info=True)
        self._local = threading.local()

    def __enter__(self) -> PhotoStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# --- command line: the vector index after bulk ingestion --------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.photostore index build|status|drop`: manage the vector index of STORE_TABLE
    at STORE_URL. Build it after a bulk ingestion; rows ingested later are indexed as they arrive."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m services.photostore", description=main.__doc__)
    parser.add_argument("what", choices=["index"])
    parser.add_argument("action", choices=["build", "status", "drop"])
    from services.common.config import CommonSettings

    # The same settings the gateway and workers read (environment, then .env), so the index is built
    # on the table they search.
    settings = CommonSettings()
    parser.add_argument("--url", default=settings.store_url)
    parser.add_argument("--table", default=settings.store_table)
    parser.add_argument("--no-wait", action="store_true", help="start the build and return")
    args = parser.parse_args(argv)
    with PhotoStore(args.url, args.table, query_timeout=24 * 3600, **settings.store_options()) as photo_store:
        try:
            if args.action == "build":
                began = time.perf_counter()
                status = photo_store.build_index(wait=not args.no_wait)
                status["seconds"] = round(time.perf_counter() - began, 1)
            elif args.action == "drop":
                photo_store.drop_index()
                status = photo_store.index_status()
            else:
                status = photo_store.index_status()
        except (StoreError, BadRequest) as error:
            print(error.message)
            return 1
    print(json.dumps(status))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
