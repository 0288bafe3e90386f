"""The vector index's lifecycle: build it after bulk ingestion, read its state, drop it.

Building costs about 1,350 rows/s on 2 cores and merges rebuild it, so the index is built after bulk
ingestion, not kept during it (`bench/store.py` measures both); rows inserted later are indexed as
they arrive. The SQL of each step is the dialect's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from services.photostore import sql
from services.photostore.dialects import INDEX_ABSENT, INDEX_BUILT, INDEX_NAME, INDEX_NOT_BUILT
from services.photostore.errors import StoreError

if TYPE_CHECKING:
    from services.photostore.client import PhotoStore


def index_status(store: PhotoStore) -> dict[str, Any]:
    """{"status": Absent | NotBuilt | InProgress | Built, "type": ..., "fail_reason": ..., "name": ...}."""
    params = {"db": store.database, "table": store.layout.local_table(store.table), "name": INDEX_NAME}
    return store.dialect.index_status(store.connection.read_rows, params,
                                      has_rows=lambda: store.row_count_now() > 0)


def build_index(store: PhotoStore, wait: bool = True) -> dict[str, Any]:
    """Add the vector index (if missing) and build it over the rows already stored; with `wait`, return
    when it is built."""
    dim = store.known_dim()
    if dim is None:
        raise StoreError(f"The table {store.database}.{store.table} does not exist yet: ingest photos first.")
    dialect, connection = store.dialect, store.connection
    if index_status(store)["status"] == INDEX_ABSENT:
        connection.command("index creation", store.layout.on_rows(
            dialect.add_index_sql(store.database, store.table, dim, store.index_type), store.database, store.table))
    build = dialect.build_index_sql(store.database, store.table)
    build = build and store.layout.on_rows(build, store.database, store.table)
    if build:
        # mutations_sync=2 waits for the mutation; without it the build goes on in the background.
        connection.command("index build", build, settings={"mutations_sync": 2} if wait else {})
    wait_sql = dialect.wait_index_sql(store.database, store.table)
    if wait and wait_sql:
        connection.command("index build", wait_sql)
    status = index_status(store)
    if wait and status["status"] != INDEX_BUILT:
        raise StoreError(f"The vector index of {store.database}.{store.table} did not build: "
                         f"{status.get('fail_reason') or status['status']}.")
    return status


def wants_index(store: PhotoStore) -> bool:
    """Whether the table has outgrown exact search (`exact_below` rows) and has no vector index that is
    built or being built: what an ingest worker checks when a job ends."""
    if store.known_dim() is None or store.row_count_now() < store.exact_below:
        return False
    return index_status(store)["status"] in (INDEX_ABSENT, INDEX_NOT_BUILT)


def drop_index(store: PhotoStore) -> None:
    """Remove the vector index; searches are then exact scans."""
    if index_status(store)["status"] != INDEX_ABSENT:
        store.connection.command("index removal", store.layout.on_rows(
            store.dialect.drop_index_sql(store.database, store.table), store.database, store.table))


def explain_search(store: PhotoStore, vector: np.ndarray, top_k: int = 10, *, exact: bool = False,
                   filters: dict[str, Any] | None = None) -> str:
    """The server's `EXPLAIN indexes = 1` of a search: shows whether the vector index is used."""
    sql_text, params = sql.search_sql(store.dialect, store.database, store.table, filters=filters)
    params.update(q=np.asarray(vector, dtype=np.float32).reshape(-1).tolist(), k=int(top_k))
    settings = store.dialect.search_settings(int(top_k), exact=exact, width=store.search_width)
    rows = store.connection.query("explain", "EXPLAIN indexes = 1 " + sql_text, params, settings).result_rows
    return "\n".join(str(row[0]) for row in rows)
