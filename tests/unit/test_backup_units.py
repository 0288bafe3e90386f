"""The pieces of backups that need no store: BACKUP_EVERY, which tables belong to a library, a saved
schema renamed for the restore, the refusals read from the manifest alone, and `make status`'s line."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.backup import BackupError, parse_every, prune, read_manifest
from services.backup.load import _renamed
from services.backup.manifest import PARTIAL
from services.backup.tables import owner
from tools.stack_status import Probes, ServiceRow, gather, last_backup, render


def test_backup_every_reads_durations_and_names_a_bad_one():
    assert parse_every("24h") == 86400
    assert parse_every("30m") == 1800
    assert parse_every("90") == 90
    assert parse_every("") is None
    with pytest.raises(ValueError, match="BACKUP_EVERY must be a duration such as 24h, 30m or 90s"):
        parse_every("daily")


def test_a_table_belongs_to_the_library_whose_name_it_extends_most():
    libraries = {"photos", "photos_random_demo"}
    assert owner("photos_thumbs", libraries) == "photos"
    assert owner("photos_random_demo_thumbs", libraries) == "photos_random_demo"
    assert owner("photos", libraries) == "photos"
    assert owner("photosynthesis", libraries) is None


def test_a_saved_schema_is_renamed_for_the_library_it_is_restored_into():
    schema = "CREATE TABLE default.photos_thumbs\n(\n    `photo_id` String\n)\nENGINE = ReplacingMergeTree"
    assert _renamed(schema, "`db`.`mine_thumbs`").startswith("CREATE TABLE `db`.`mine_thumbs` \n(\n    `photo_id`")


def write_backup(directory, name, rows=5, created="2025-03-01T10:00:00+00:00"):
    folder = directory / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "format_version": 1, "created_at": created, "rows": rows, "bytes": 3 * 1024**2,
        "tables": [{"file": "photos.native.zst"}]}))
    return folder


def test_a_folder_without_a_manifest_or_from_a_newer_version_is_refused(tmp_path):
    with pytest.raises(BackupError, match="is missing: .* is not a complete backup"):
        read_manifest(tmp_path)
    folder = write_backup(tmp_path, "photos-1")
    (folder / "manifest.json").write_text(json.dumps({"format_version": 2, "tables": [{"file": "x"}]}))
    with pytest.raises(BackupError, match=r"written by a newer version \(backup format 2; this one reads 1"):
        read_manifest(folder)


def test_prune_keeps_the_newest_complete_backups_of_that_library_only(tmp_path):
    for name in ("photos-20250101T000000.000000Z", "photos-20250102T000000.000000Z",
                 "photos-20250103T000000.000000Z", "photos_demo-20240101T000000.000000Z"):
        write_backup(tmp_path, name)
    (tmp_path / ("photos-20250104T000000.000000Z" + PARTIAL)).mkdir()
    prune(tmp_path, "photos", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "photos-20250102T000000.000000Z", "photos-20250103T000000.000000Z",
        "photos-20250104T000000.000000Z" + PARTIAL, "photos_demo-20240101T000000.000000Z"]


def test_make_status_shows_the_last_backup(tmp_path):
    write_backup(tmp_path, "photos-20250301T100000.000000Z", rows=48211,
                 created=datetime(2025, 3, 1, 10, tzinfo=UTC).isoformat())
    settings = {"API_URL": "http://127.0.0.1:8000", "EMBEDDER_URL": "http://127.0.0.1:8001",
                "REDIS_URL": "redis://127.0.0.1:6379/0", "STORE_URL": "http://127.0.0.1:8123",
                "BACKUP_DIR": str(tmp_path)}
    probes = Probes(get_json=lambda url, headers=None: None, queue_counts=lambda url: None,
                    index_state=lambda url, table, options: None)
    text = render(gather(settings, [ServiceRow("api", "stopped", "no answer", "-")], probes))
    assert "last backup      2025-03-01 10:00 UTC (" in text
    assert f"), 48211 rows, 3.0 MiB in {tmp_path / 'photos-20250301T100000.000000Z'}" in text
    assert "embedder model   unreachable (embedder)" in text
    assert last_backup(str(tmp_path / "none"), "photos") is None
    assert "last backup      none (make backup writes one" in render(gather({**settings, "BACKUP_DIR": str(
        tmp_path / "none")}, [], probes))
