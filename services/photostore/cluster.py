"""Where the photo table lives: one server, or a self-managed ClickHouse cluster (STORE_CLUSTER).

The one place that knows about clusters; the rest of photostore asks a `Layout` for its DDL, for the
table an ALTER or DELETE targets and for the settings of an insert.

- One server (STORE_CLUSTER empty; also ClickHouse Cloud, whose SharedMergeTree replicates every
  table without ON CLUSTER, and MyScale Cloud): the tables as sql.py builds them.
- A cluster (STORE_CLUSTER=name, a cluster of the servers' `remote_servers`): every DDL runs
  `ON CLUSTER name`. Each node keeps its shard's rows in `<table>_local`, a Replicated* copy of the
  single-server engine (path `/clickhouse/tables/{shard}/{database}/{table}`, replica `{replica}`,
  from each server's macros); `<table>`, the name every read and search uses, is a Distributed table
  over them, sharded by cityHash64(photo_id) so that all versions of a photo meet on one shard (where
  ReplacingMergeTree and FINAL fold them). A search runs on every shard, each with its own vector
  index, and the initiator merges the top k. The model record (`<table>_meta`) is replicated to every
  node (one path for all shards): it is tiny and read locally.
- Inserts go to the Distributed table with `insert_distributed_sync=1`: the insert returns once every
  shard has its rows, so a batch the worker reports done is searchable and a retried batch sees what
  the first try wrote (its idempotence check). Without it the rows would wait in the initiator's
  queue and be sent in the background. ALTERs (the vector index) and lightweight DELETEs go to the
  local tables ON CLUSTER, because a Distributed table has neither indexes nor parts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from services.photostore import sql

LOCAL_SUFFIX = "_local"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
# The model record: one replication path for the whole cluster, so every node holds it.
META_REPLICA_PATH = "/clickhouse/tables/all/{database}/{table}"
_ENGINE_RE = re.compile(r"\nENGINE = (\w+)(?:\(([^)]*)\))?\n")


def replicated_engine(ddl: str, path: str) -> str:
    """`ddl` (a single-server CREATE TABLE) with its *MergeTree engine made Replicated*MergeTree."""
    match = _ENGINE_RE.search(ddl)
    if match is None or not match.group(1).endswith("MergeTree"):
        raise ValueError("expected a CREATE TABLE with a *MergeTree engine")
    arguments = ", ".join([f"'{path}'", "'{replica}'", *([match.group(2)] if match.group(2) else [])])
    return ddl[:match.start()] + f"\nENGINE = Replicated{match.group(1)}({arguments})\n" + ddl[match.end():]


def _on_cluster(ddl: str, ref: str, cluster: str) -> str:
    """Put `ON CLUSTER` right after the table name (its place in CREATE, ALTER and DELETE)."""
    if ref not in ddl:
        raise ValueError(f"{ref} is not in the statement")
    return ddl.replace(ref, f"{ref} ON CLUSTER {sql.quote_identifier(cluster)}", 1)


@dataclass(frozen=True)
class Layout:
    """How one photo table is laid out; `cluster` empty means one server."""

    cluster: str = ""

    def __post_init__(self) -> None:
        if self.cluster:
            sql.quote_identifier(self.cluster)

    def local_table(self, table: str) -> str:
        """The table that holds the rows on each server (the one with parts and the vector index)."""
        return f"{table}{LOCAL_SUFFIX}" if self.cluster else table

    def create_meta(self, database: str, table: str) -> list[str]:
        return self.create_everywhere(sql.create_meta_sql(database, table), database, sql.meta_table_name(table))

    def create_everywhere(self, ddl: str, database: str, name: str) -> list[str]:
        """A side table (the model record, thumbnails, file records) kept whole on every node: one
        replication path for the whole cluster, so each node reads it locally."""
        if not self.cluster:
            return [ddl]
        ddl = replicated_engine(ddl, META_REPLICA_PATH)
        return [_on_cluster(ddl, sql.table_ref(database, name), self.cluster)]

    def create_table(self, database: str, table: str, dim: int) -> list[str]:
        if not self.cluster:
            return [sql.create_table_sql(database, table, dim)]
        local = self.local_table(table)
        ddl = replicated_engine(sql.create_table_sql(database, local, dim), REPLICA_PATH)
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {sql.table_ref(database, table)} "
            f"ON CLUSTER {sql.quote_identifier(self.cluster)}\n"
            f"AS {sql.table_ref(database, local)}\n"
            f"ENGINE = Distributed({sql.quote_identifier(self.cluster)}, {sql.quote_identifier(database)}, "
            f"{sql.quote_identifier(local)}, cityHash64(photo_id))"
        )
        return [_on_cluster(ddl, sql.table_ref(database, local), self.cluster), distributed]

    def on_rows(self, statement: str, database: str, table: str) -> str:
        """An ALTER TABLE or DELETE FROM built for `table`, aimed at the tables holding the rows."""
        if not self.cluster:
            return statement
        local = sql.table_ref(database, self.local_table(table))
        statement = statement.replace(sql.table_ref(database, table), local, 1)
        return _on_cluster(statement, local, self.cluster)

    def alter_table(self, statement: str, database: str, table: str) -> list[str]:
        """An ALTER TABLE of the photo table's columns: on a cluster, the local tables and the
        Distributed table alike, so that both keep the same columns."""
        if not self.cluster:
            return [statement]
        return [self.on_rows(statement, database, table),
                _on_cluster(statement, sql.table_ref(database, table), self.cluster)]

    def insert_settings(self) -> dict[str, Any]:
        return {"insert_distributed_sync": 1} if self.cluster else {}
