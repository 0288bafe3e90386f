"""Store access: the only module that imports clickhouse_connect.

One URL (`STORE_URL`, a clickhouse-connect DSN such as `http://user:pass@host:8123/database`) picks the
server: the embedded store (`services/store/`), MyScale or ClickHouse. All three speak the ClickHouse
HTTP interface, so the same client code reaches them; what differs is the SQL dialect of vector search,
which is decided once, by asking the server (`Dialect`, `detect_dialect`).

The table keeps the seed's columns (`id`, `photo_id`, `photo_image_url`, `photo_embed` with a length
constraint) plus the Unsplash metadata of `METADATA_FIELDS` and `inserted_at`. Which model made the
vectors is recorded in a small `<table>_meta` table (model name, dimension): a table holds the vectors
of one model only, and `ensure_table` refuses another one with `ModelMismatch`.

Duplicates: the engine is `ReplacingMergeTree(inserted_at) ORDER BY photo_id`, so writing the same
photo twice (a retried ingest task) leaves two rows until a background merge keeps the newest. Every
read here uses `FINAL`, so readers always see one row per photo_id, merged or not. FINAL costs a merge
at read time, which at the seed's scale (tens of thousands of rows, exact search) is small; the worker
also skips photo_ids that are already stored, so duplicates stay rare.

Every value reaches the server as a bound parameter (`{name:Type}`); only identifiers (validated
against a strict pattern) and the vector dimension (an int) are written into SQL text.

Thread safety: clickhouse-connect clients must not run concurrent queries in one session, so each
thread gets its own client (no session id; they share the driver's connection pool).
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
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


@dataclass(frozen=True)
class Dialect:
    """What differs between servers; the one place that switches on the kind of server."""

    name: str  # "clickhouse" (also the embedded store) or "myscale"
    # The distance function whose value is cosine distance (1 - cosine similarity). MyScale's
    # `distance()` takes its metric from the table's vector index (MSTG, metric_type=Cosine).
    distance_function: str

    def distance(self, column: str, param: str) -> str:
        return f"{self.distance_function}({column}, {{{param}:Array(Float32)}})"


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
               exclude_photo_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """SELECT of the nearest photos; returns (sql, params without `q` and `k`, which the caller binds).

    `min_score` is applied by the caller to the rows that come back: they arrive best first, so
    keeping those at or above it is the same answer as a WHERE on the score, and leaves the ORDER BY
    distance LIMIT k shape that vector indexes recognise untouched.
    """
    where, params = filter_sql(filters)
    if exclude_photo_id is not None:
        where.append("photo_id != {exclude_photo_id:String}")
        params["exclude_photo_id"] = exclude_photo_id
    distance = dialect.distance("photo_embed", "q")
    sql = (
        f"SELECT {', '.join(PHOTO_COLUMNS)}, {distance} AS dist\n"
        f"FROM {table_ref(database, table)} FINAL\n"
        + (f"WHERE {' AND '.join(where)}\n" if where else "")
        # photo_id breaks ties so equal scores come back in a stable order.
        + "ORDER BY dist ASC, photo_id ASC\nLIMIT {k:UInt32}"
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


def random_photo_sql(database: str, table: str) -> str:
    # A full scan; fine at the seed's size. Sampling by id range would be the next step at millions.
    return f"SELECT {', '.join(PHOTO_COLUMNS)} FROM {table_ref(database, table)} FINAL ORDER BY rand() LIMIT 1"


def count_sql(database: str, table: str) -> str:
    return f"SELECT count() FROM {table_ref(database, table)} FINAL"


def existing_ids_sql(database: str, table: str) -> str:
    # No FINAL: a duplicate row still proves the photo is stored, and DISTINCT folds it.
    return (f"SELECT DISTINCT photo_id FROM {table_ref(database, table)} "
            "WHERE photo_id IN {photo_ids:Array(String)}")


def stable_id(photo_id: str) -> int:
    """A 64-bit id that depends only on photo_id, so re-ingesting a photo gives it the same id."""
    return int.from_bytes(hashlib.blake2b(photo_id.encode("utf-8"), digest_size=8).digest(), "big")


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

    def __init__(self, url: str, table: str = "photos", *, connect_timeout: float = 5, query_timeout: float = 30):
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

    def _query(self, action: str, sql: str, params: dict[str, Any] | None = None):
        try:
            return self._client().query(sql, parameters=params or {})
        except Exception as error:  # noqa: BLE001
            raise self._translate(error, action) from error

    def _command(self, action: str, sql: str, params: dict[str, Any] | None = None):
        try:
            return self._client().command(sql, parameters=params or {})
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
                f"vectors ({self.database}.{meta_table_name(self.table)} is missing or empty). Drop it to "
                "re-index, or set STORE_TABLE to another name."
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
                f"mix. To re-index with the new model, drop {self.database}.{self.table} and "
                f"{self.database}.{meta_table_name(self.table)}, or set STORE_TABLE to another table name."
            )
        # Also after a crash between recording the model and creating the table.
        self._command("table creation", create_table_sql(self.database, self.table, dim))
        self._info = {"model": model, "dim": dim, "table": self.table, "database": self.database,
                      "dialect": self.dialect.name}
        logger.info("store table %s.%s ready for %s (%d dims)", self.database, self.table, model, dim)

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
                f"{matrix.shape[1]}. Drop the table to re-index, or set STORE_TABLE to another name."
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
               filters: dict[str, Any] | None = None, exclude_photo_id: str | None = None) -> list[dict[str, Any]]:
        """Nearest photos by cosine distance; each dict has photo_id, photo_image_url, score (cosine similarity),
        rank (1-based) and the metadata fields. No table yet: no results."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.size == 0 or not np.all(np.isfinite(query)):
            raise BadRequest("The query vector must be a non-empty list of finite numbers.")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= 10000:
            raise BadRequest(f"top_k must be an integer from 1 to 10000, not {top_k!r}.")
        sql, params = search_sql(self.dialect, self.database, self.table, filters=filters,
                                 exclude_photo_id=exclude_photo_id)
        dim = self._known_dim()
        if dim is None:
            return []
        if query.size != dim:
            raise ModelMismatch(
                f"The query vector has {query.size} dimensions but the table {self.database}.{self.table} holds "
                f"{dim}-dimensional vectors: the embedder and the table use different models."
            )
        params.update(q=query.tolist(), k=int(top_k))
        try:
            result = self._query("search", sql, params)
        except StoreError as error:
            if self._is_unknown_table(error):
                self._info = None
                return []
            raise
        results = []
        for row in result.result_rows:
            photo = dict(zip(PHOTO_COLUMNS, row[:-1]))
            score = 1.0 - float(row[-1])
            if min_score is not None and score < min_score:
                break  # rows arrive best first: the rest score lower still
            photo["score"] = score
            photo["rank"] = len(results) + 1
            results.append(photo)
        return results

    def get_photo(self, photo_id: str, with_vector: bool = False) -> dict[str, Any] | None:
        rows = self._read_rows("photo lookup", photo_sql(self.database, self.table, with_vector),
                               {"photo_id": photo_id})
        if not rows:
            return None
        photo = dict(zip(PHOTO_COLUMNS, rows[0]))
        if with_vector:
            photo["vector"] = [float(x) for x in rows[0][len(PHOTO_COLUMNS)]]
        return photo

    def random_photo(self) -> dict[str, Any] | None:
        rows = self._read_rows("random photo", random_photo_sql(self.database, self.table))
        return dict(zip(PHOTO_COLUMNS, rows[0])) if rows else None

    def count(self) -> int:
        rows = self._read_rows("count", count_sql(self.database, self.table))
        return int(rows[0][0]) if rows else 0

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
