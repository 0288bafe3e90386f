"""STORE_CLUSTER: the photo table's DDL and writes on one server and on a self-managed cluster."""
from types import SimpleNamespace

import numpy as np
import pytest

from services.photostore import PhotoStore, sql
from services.photostore.cluster import Layout, replicated_engine


def test_one_server_keeps_the_single_server_sql():
    layout = Layout("")
    assert layout.create_table("db", "photos", 4) == [sql.create_table_sql("db", "photos", 4)]
    assert layout.create_meta("db", "photos") == [sql.create_meta_sql("db", "photos")]
    assert layout.on_rows(sql.delete_sql("db", "photos"), "db", "photos") == sql.delete_sql("db", "photos")
    assert layout.local_table("photos") == "photos"
    assert layout.insert_settings() == {}


def test_a_cluster_gets_replicated_local_tables_behind_a_distributed_one():
    local, distributed = Layout("prod").create_table("db", "photos", 512)
    assert local.startswith("CREATE TABLE IF NOT EXISTS `db`.`photos_local` ON CLUSTER `prod`\n")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', "
            "'{replica}', inserted_at)\nORDER BY photo_id") in local
    assert "CHECK length(photo_embed) = 512" in local
    assert distributed == ("CREATE TABLE IF NOT EXISTS `db`.`photos` ON CLUSTER `prod`\nAS `db`.`photos_local`\n"
                           "ENGINE = Distributed(`prod`, `db`, `photos_local`, cityHash64(photo_id))")


def test_the_model_record_is_replicated_to_every_node():
    (meta,) = Layout("prod").create_meta("db", "photos")
    assert meta.startswith("CREATE TABLE IF NOT EXISTS `db`.`photos_meta` ON CLUSTER `prod`\n")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}')\n" in meta


def test_alters_and_deletes_go_to_the_local_tables_on_the_cluster():
    layout = Layout("prod")
    assert layout.on_rows(sql.delete_sql("db", "photos"), "db", "photos") == (
        "DELETE FROM `db`.`photos_local` ON CLUSTER `prod` WHERE photo_id IN {photo_ids:Array(String)}")
    alter = "ALTER TABLE `db`.`photos` MATERIALIZE INDEX `photo_embed_index`"
    assert layout.on_rows(alter, "db", "photos") == (
        "ALTER TABLE `db`.`photos_local` ON CLUSTER `prod` MATERIALIZE INDEX `photo_embed_index`")
    assert layout.insert_settings() == {"insert_distributed_sync": 1}


def test_a_bad_cluster_name_or_engine_is_refused():
    with pytest.raises(ValueError, match="valid table or database name"):
        Layout("prod; DROP TABLE x")
    with pytest.raises(ValueError, match="MergeTree"):
        replicated_engine("CREATE TABLE t (x UInt8)\nENGINE = Memory\n", "/p")


class RecordingConnection:
    """Answers the reads of ensure_table and insert_photos; records what is sent."""

    def __init__(self):
        self.commands, self.inserts, self.meta = [], [], []

    def query(self, action, text, params=None):
        if action == "table check":
            return SimpleNamespace(result_rows=[[0]])
        if action == "model lookup":
            return SimpleNamespace(result_rows=self.meta)
        if action == "version check":
            return SimpleNamespace(result_rows=[["25.8"]])
        return SimpleNamespace(result_rows=[[0]])  # dialect check: no system.vector_indices

    def command(self, action, text, params=None, settings=None):
        self.commands.append(text)

    def read_rows(self, action, text, params=None):
        assert action == "active table lookup"
        return []  # no active record: the base table answers

    def insert(self, action, table, columns, names, types, settings=None):
        self.inserts.append((table, settings))
        if table.endswith("_meta"):
            self.meta = [[columns[0][0], columns[1][0]]]


def test_the_store_client_creates_and_writes_through_the_cluster_layout():
    store = PhotoStore("http://127.0.0.1:1/db", "photos", cluster="prod")
    store.connection = connection = RecordingConnection()
    store.ensure_table(4, "model-x")
    firsts = [c.split("\n")[0] for c in connection.commands]
    assert firsts[:3] == [
        "CREATE TABLE IF NOT EXISTS `db`.`photos_meta` ON CLUSTER `prod`",
        "CREATE TABLE IF NOT EXISTS `db`.`photos_local` ON CLUSTER `prod`",
        "CREATE TABLE IF NOT EXISTS `db`.`photos` ON CLUSTER `prod`"]
    # Every other statement is ON CLUSTER too: columns an older table lacks (on the local and the
    # Distributed tables alike), and the thumbnail and file tables (whole on every node).
    assert all("ON CLUSTER `prod`" in first for first in firsts)
    assert "ALTER TABLE `db`.`photos_local` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS `taken_at`" in " ".join(firsts)
    assert "ALTER TABLE `db`.`photos` ON CLUSTER `prod` ADD COLUMN IF NOT EXISTS `taken_at`" in " ".join(firsts)
    assert firsts[-2:] == ["CREATE TABLE IF NOT EXISTS `db`.`photos_thumbs` ON CLUSTER `prod`",
                           "CREATE TABLE IF NOT EXISTS `db`.`photos_files` ON CLUSTER `prod`"]
    assert all("Replicated" in c for c in connection.commands if c.startswith("CREATE TABLE") and "_local" not in
               c.split("\n")[0] and "Distributed" not in c)
    store.insert_photos([{"photo_id": "p1", "photo_image_url": "http://x/1.jpg"}], np.eye(1, 4, dtype=np.float32))
    assert connection.inserts[-1] == ("photos", {"insert_distributed_sync": 1})
