"""PhotoStore: photos and their vectors in one table of a ClickHouse-compatible server.

One URL (`STORE_URL`, a clickhouse-connect DSN such as `http://user:pass@host:8123/database`) reaches the
embedded store (`services/embedded_store/`), MyScale or ClickHouse: all speak the ClickHouse HTTP
interface; the SQL that differs is the dialect's, decided once by asking the server. A `<table>_meta`
table records which model made the vectors, and `ensure_table` refuses another (`ModelMismatch`).

Search is exact (a full scan) below `exact_below` rows, indexed above, in the one shape vector indexes
answer, `ORDER BY <distance> LIMIT k`: no tie-breaker column (ties are ordered here), no FINAL (a photo
written twice, until a merge, is folded here). Point reads use FINAL; deletes are lightweight.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from services.common.errors import BadRequest
from services.common.schemas import METADATA_FIELDS, PhotoRecord
from services.photostore import index as vector_index
from services.photostore import sql, terms
from services.photostore.active import ActiveTables
from services.photostore.cluster import Layout
from services.photostore.columns import FACET_COLUMNS, PHOTO_COLUMNS, column_type, insert_value
from services.photostore.connection import Connection, is_unknown_table, redact_url
from services.photostore.dialects import Dialect, dialect_for
from services.photostore.errors import ModelMismatch, StoreError
from services.photostore.filters import filter_sql
from services.photostore.library import LibraryTables
from services.photostore.migrations import add_missing_columns
from services.photostore.results import MAX_RESULTS, check_count, collapsed, ranked, search_rows
from services.photostore.sources import SourceCopies

logger = logging.getLogger(__name__)

# Defaults chosen from bench/results/store-*.json (bench/store.py, 2 shared cores): an exact top-10 took
# about 70 ms at 25,000 rows and 0.8-1 s at 200,000, the indexed one 26-40 ms at both. Below 50,000 rows
# the exact scan is fast enough and exact; above it the index answers. Width 256 (ClickHouse's default)
# kept recall@10 at 0.99 on clustered, CLIP-like vectors at 25x the exact speed at 200,000 rows; 64 was
# as good there, but uniform vectors need more (0.987 at 256 at 25,000 rows), so 256 leaves a margin.
DEFAULT_EXACT_BELOW = 50_000
DEFAULT_SEARCH_WIDTH = 256
DEFAULT_INDEX_TYPE = "MSTG"


def _option(value: int | None, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a whole number of 0 or more, not {value!r}.")
    return int(value)


class PhotoStore(ActiveTables, SourceCopies, LibraryTables):
    """Photos and their vectors in one table of a ClickHouse-compatible server.

    `exact_below`, `search_width` and `index_type` are the search options (STORE_EXACT_BELOW,
    STORE_SEARCH_WIDTH, STORE_INDEX_TYPE through `CommonSettings.store_options()`); None keeps the
    measured defaults."""

    def __init__(self, url: str, table: str = "photos", *, connect_timeout: float = 5, query_timeout: float = 30,
                 exact_below: int | None = DEFAULT_EXACT_BELOW, search_width: int | None = DEFAULT_SEARCH_WIDTH,
                 index_type: str | None = DEFAULT_INDEX_TYPE, cluster: str | None = None):
        self.url = url.strip().rstrip("/")
        self.safe_url = redact_url(self.url)
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"STORE_URL must be an http(s) URL such as http://127.0.0.1:8123, not {self.safe_url!r}.")
        database = unquote(parsed.path.lstrip("/").split("/")[0]) if parsed.path else ""
        self.database = database or "default"
        sql.quote_identifier(self.database)
        sql.quote_identifier(sql.meta_table_name(table))
        self._init_active(table)  # `table` is the base name; `self.table` the active one (active.py)
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self.connection = Connection(self.url, self.database, connect_timeout=connect_timeout,
                                     query_timeout=query_timeout)
        self._dialect: Dialect | None = None
        self._server_version: str | None = None
        self._info: dict[str, Any] | None = None
        self._columns_checked = False
        self.exact_below = _option(exact_below, "STORE_EXACT_BELOW", DEFAULT_EXACT_BELOW)
        self.search_width = _option(search_width, "STORE_SEARCH_WIDTH", DEFAULT_SEARCH_WIDTH)
        self.index_type = index_type or DEFAULT_INDEX_TYPE
        sql.quote_identifier(self.index_type)
        self._rows_seen: tuple[float, int] | None = None  # (monotonic time, rows) of the last row count
        # One server, or a cluster (STORE_CLUSTER): the DDL and where writes go (cluster.py).
        self.layout = Layout(cluster or "")

    @property
    def dialect(self) -> Dialect:
        """The server's SQL dialect, asked once: MyScale lists its vector indices in system.vector_indices."""
        if self._dialect is None:
            version = self.connection.query("version check", "SELECT version()").result_rows[0][0]
            rows = self.connection.query("dialect check", sql.table_exists_sql(),
                                         {"db": "system", "name": "vector_indices"}).result_rows
            dialect = dialect_for(bool(rows[0][0]))
            logger.info("store %s: server version %s, dialect %s", self.safe_url, version, dialect.name)
            self._server_version = str(version)
            self._dialect = dialect
        return self._dialect

    # -- table -----------------------------------------------------------------------------------

    def _table_exists(self, table: str) -> bool:
        rows = self.connection.query("table check", sql.table_exists_sql(),
                                     {"db": self.database, "name": table}).result_rows
        return bool(rows[0][0])

    def _read_meta(self) -> list:
        return self.connection.query("model lookup", sql.read_meta_sql(self.database, self.table)).result_rows

    def table_info(self) -> dict[str, Any] | None:
        """{"model": str, "dim": int} of the existing table, or None if there is no table yet."""
        if not self._table_exists(self.table):
            return None
        try:
            rows = self._read_meta()
        except StoreError as error:
            if not is_unknown_table(error):
                raise
            rows = []
        if not rows:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} exists but has no record of the model that made its "
                f"vectors ({self.database}.{sql.meta_table_name(self.table)} is missing or empty). "
                + self._reindex_hint()
            )
        info = {"model": str(rows[0][0]), "dim": int(rows[0][1]), "table": self.table,
                "database": self.database, "dialect": self.dialect.name}
        self._add_missing_columns()  # the gateway may read an old table before any worker opens it
        self._info = info
        return dict(info)

    def ensure_table(self, dim: int, model: str) -> None:
        """Create the table if missing (idempotent); refuse (ModelMismatch) if it exists for another model/dim."""
        dim = sql.check_dim(dim)
        if not isinstance(model, str) or not model.strip():
            raise ValueError("ensure_table needs the name of the model that makes the vectors.")
        info = self.table_info()
        if info is None:
            for statement in self.layout.create_meta(self.database, self.table):
                self.connection.command("table creation", statement)
            rows = self._read_meta()
            if not rows:
                self.connection.insert("model record", sql.meta_table_name(self.table), [[model], [dim]],
                                       ["model", "dim"], ["String", "UInt32"])
                rows = self._read_meta()
            info = {"model": str(rows[0][0]), "dim": int(rows[0][1])}
        if info["model"] != model or info["dim"] != dim:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} holds {info['dim']}-dimensional vectors of model "
                f"{info['model']!r}, not {dim}-dimensional vectors of {model!r}; vectors of two models never "
                f"mix. " + self._reindex_hint()
            )
        # Also after a crash between recording the model and creating the table.
        for statement in self.layout.create_table(self.database, self.table, dim):
            self.connection.command("table creation", statement)
        self._add_missing_columns()
        self.ensure_library_tables()
        self._info = {"model": model, "dim": dim, "table": self.table, "database": self.database,
                      "dialect": self.dialect.name}
        logger.info("store table %s.%s ready for %s (%d dims)", self.database, self.table, model, dim)

    def _add_missing_columns(self) -> None:
        """Once per process: a table made by an older version gets the newer columns."""
        if not self._columns_checked:
            add_missing_columns(self.connection, self.layout, self.database, self.table)
            self._columns_checked = True

    def _reindex_hint(self) -> str:
        return ("To move the library to another model without downtime, run make reembed MODEL=<that model>: it "
                "fills a new table from each photo's source while searches go on, then switches (or drop "
                f"{self.database}.{self.table} and its {sql.meta_table_name(self.table)}, then ingest again).")

    def known_dim(self) -> int | None:
        """The table's vector dimension (remembered once read); None when there is no table yet."""
        if self._info is None:
            self.table_info()
        return self._info["dim"] if self._info else None

    # -- writes ----------------------------------------------------------------------------------

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
        dim = self.known_dim()
        if dim is None:
            raise StoreError(f"The table {self.database}.{self.table} does not exist yet: call ensure_table first.")
        if matrix.shape[1] != dim:
            raise ModelMismatch(
                f"The table {self.database}.{self.table} holds {dim}-dimensional vectors; these have "
                f"{matrix.shape[1]}. " + self._reindex_hint()
            )
        if ids is not None and len(ids) != len(records):
            raise ValueError(f"Expected {len(records)} ids, got {len(ids)}.")
        row_ids = [int(i) for i in ids] if ids is not None else [sql.stable_id(r.photo_id) for r in records]
        names = ["id", "photo_id", "photo_image_url", "photo_embed", *METADATA_FIELDS]
        types = ["UInt64", "String", "String", "Array(Float32)", *(column_type(f) for f in METADATA_FIELDS)]
        columns: list[list[Any]] = [
            row_ids,
            [r.photo_id for r in records],
            [r.photo_image_url for r in records],
            # Plain lists encode several times faster than lists of numpy rows.
            matrix.tolist(),
            *([insert_value(field, getattr(r, field)) for r in records] for field in METADATA_FIELDS),
        ]
        self.connection.insert("insert", self.table, columns, names, types, self.layout.insert_settings())
        return len(records)

    def delete_photos(self, photo_ids: Sequence[str]) -> int:
        """Delete photos by photo_id (every stored version); returns how many of them were stored."""
        wanted = list(dict.fromkeys(str(p) for p in photo_ids))
        if not wanted:
            return 0
        present = self.existing_ids(wanted)
        if present:
            self.connection.command("delete", self.layout.on_rows(sql.delete_sql(self.database, self.table),
                                                                  self.database, self.table),
                                    {"photo_ids": sorted(present)})
            self.delete_library_rows(sorted(present))
            self._rows_seen = None
        return len(present)

    # -- reads -----------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, top_k: int = 10, min_score: float | None = None,
               filters: dict[str, Any] | None = None, exclude_photo_id: str | None = None, *,
               offset: int = 0, collapse: float | None = None, exact: bool | None = None, search_width: int | None = None,
               stored_terms: Sequence = (), where: tuple[list[str], dict] | None = None) -> list[dict[str, Any]]:
        """Nearest photos by cosine distance; each dict has photo_id, photo_image_url, score (cosine similarity),
        rank (1-based, counting from the first page) and the metadata fields. No table yet: no results.

        `offset` skips that many results (pagination). `collapse` (a cosine similarity, e.g. 0.98) drops a
        result that close to a better one. `exact` forces a full scan (True) or the index (False); by
        default the search is exact below `exact_below` rows. `search_width` overrides the index's
        candidate list size for this query. `stored_terms`: see `terms.stored`; `where`: see `sql.search_sql`."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.size == 0 or not np.all(np.isfinite(query)):
            raise BadRequest("The query vector must be a non-empty list of finite numbers.")
        top_k, offset = check_count("top_k", top_k, 1), check_count("offset", offset, 0)
        if top_k + offset > MAX_RESULTS:
            raise BadRequest(f"offset + top_k must be at most {MAX_RESULTS}, not {offset + top_k}.")
        if collapse is not None and (isinstance(collapse, bool) or not -1.0 <= float(collapse) <= 1.0):
            raise BadRequest(f"collapse must be a cosine similarity between -1 and 1, not {collapse!r}.")
        if search_width is not None:
            search_width = check_count("search_width", search_width, 1)
        with_vector = collapse is not None
        sql_text, params = sql.search_sql(self.dialect, self.database, self.table, filters=filters,
                                          exclude_photo_id=exclude_photo_id, with_vector=with_vector, where=where)
        dim = self.known_dim()
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
        fetch = min(MAX_RESULTS, wanted * (3 if with_vector else 1) + max(4, wanted // 10))
        sql_text, params = terms.stored(self, sql_text, {**params, "q": query.tolist()}, stored_terms)
        while True:
            params["k"] = fetch
            settings = self.dialect.search_settings(fetch, exact=exact, width=search_width or self.search_width)
            try:
                rows = self.connection.query("search", sql_text, params, settings).result_rows
            except StoreError as error:
                if is_unknown_table(error):
                    self._info = None
                    return []
                raise
            photos = search_rows(rows, with_vector=with_vector)
            if with_vector:
                photos = collapsed(photos, float(collapse), dim)
            if len(photos) >= wanted or len(rows) < fetch or fetch >= MAX_RESULTS:
                break
            fetch = min(MAX_RESULTS, fetch * 2)
        return ranked(photos, wanted, offset, min_score)

    def more_like(self, photo_id: str, top_k: int = 10, **options: Any) -> list[dict[str, Any]] | None:
        """Photos like a stored one, by its stored vector (no re-embedding); the photo itself is left out.
        None when there is no such photo."""
        photo = self.get_photo(photo_id, with_vector=True)
        if photo is None:
            return None
        return self.search(np.asarray(photo["vector"], dtype=np.float32), top_k=top_k,
                           exclude_photo_id=photo_id, **options)

    def explain_search(self, vector: np.ndarray, top_k: int = 10, **options: Any) -> str:
        """The server's `EXPLAIN indexes = 1` of a search (options `exact`, `filters`): is the index used?"""
        return vector_index.explain_search(self, vector, top_k, **options)

    def data_version(self) -> tuple | None:
        """A token that changes whenever the table's rows may (`sql.data_version_sql`); None with no rows yet
        or on a cluster (its parts live on every shard), where an answer must not be reused."""
        rows = [] if self.layout.cluster else self.connection.read_rows(
            "data version", sql.data_version_sql(), {"db": self.database, "table": self.table})
        return tuple(rows[0]) if rows and rows[0][0] else None

    def _row_count(self) -> int:
        """Rows on disk (duplicates included), remembered for 30 s: what decides exact or indexed search."""
        now = time.monotonic()
        if self._rows_seen is None or now - self._rows_seen[0] > 30:
            rows = self.connection.read_rows("row count", sql.row_count_sql(self.database, self.table))
            self._rows_seen = (now, int(rows[0][0]) if rows else 0)
        return self._rows_seen[1]

    def row_count_now(self) -> int:
        """Rows on disk, read afresh."""
        self._rows_seen = None
        return self._row_count()

    def get_photo(self, photo_id: str, with_vector: bool = False) -> dict[str, Any] | None:
        rows = self.connection.read_rows("photo lookup", sql.photo_sql(self.database, self.table, with_vector),
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
        rows = self.connection.read_rows("random photo", sql.random_photo_sql(self.database, self.table, where),
                                         params)
        return dict(zip(PHOTO_COLUMNS, rows[0])) if rows else None

    def count(self) -> int:
        rows = self.connection.read_rows("count", sql.count_sql(self.database, self.table))
        return int(rows[0][0]) if rows else 0

    def facet(self, column: str, limit: int = 100) -> list[dict[str, Any]]:
        """[{"value", "photos"}, ...]: the `limit` most common non-empty values of a FACET_COLUMNS column,
        most photos first. No table yet: []."""
        if column not in FACET_COLUMNS:
            raise BadRequest(f"Values can be listed for {', '.join(FACET_COLUMNS)}; not {column!r}.",
                             code="invalid_facet")
        limit = check_count("limit", limit, 1)
        rows = self.connection.read_rows("value listing", sql.facet_sql(self.database, self.table, column),
                                         {"limit": limit})
        return [{"value": str(value), "photos": int(photos)} for value, photos in rows]

    def existing_ids(self, photo_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(str(p) for p in photo_ids))
        if not wanted:
            return set()
        rows = self.connection.read_rows("lookup of stored photos",
                                         sql.existing_ids_sql(self.database, self.table), {"photo_ids": wanted})
        return {row[0] for row in rows}

    # -- the vector index (see `index`) ----------------------------------------------------------

    def build_index(self, wait: bool = True) -> dict[str, Any]:
        """Add the vector index (if missing) and build it over the stored rows; with `wait`, until built."""
        return vector_index.build_index(self, wait)

    def wants_index(self) -> bool:
        """Whether the table has outgrown exact search and has no index built or being built."""
        return vector_index.wants_index(self)

    def index_status(self) -> dict[str, Any]:
        """{"status": Absent | NotBuilt | InProgress | Built, "type": ..., "fail_reason": ...}."""
        return vector_index.index_status(self)

    def drop_index(self) -> None:
        """Remove the vector index; searches are then exact scans."""
        vector_index.drop_index(self)

    # -- lifecycle -------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the server answers; never raises."""
        return self.connection.ping()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PhotoStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

