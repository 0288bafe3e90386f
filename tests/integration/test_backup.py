"""Back up a library from a real embedded store, wipe it, restore it, and search it again; the refusals of
a restore (each with its sentence, and nothing written); and the schedule keeping BACKUP_KEEP copies."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from services.backup import BackupSchedule, StoreHttp
from services.photostore import PhotoStore
from tests.integration.store_support import DIM, MODEL, make_photo, unit_vectors

ROOT = Path(__file__).resolve().parents[2]
TABLE = "photos_bk"
COUNT = 300


def run_tool(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def snapshot(url: str) -> dict[str, tuple[int, int]]:
    """Every table of the database with its row count and a hash of all its rows: what 'nothing was
    written' compares."""
    with StoreHttp(url) as store:
        names = [row["name"] for row in store.rows("list", "SELECT name FROM system.tables WHERE database = "
                                                   "{db:String}", {"db": store.database})]
        return {name: tuple(store.rows("hash", f"SELECT count() AS n, sum(cityHash64(*)) AS h FROM "
                                               f"{store.ref(name)}")[0].values()) for name in names}


def fill(url: str, table: str, model: str = MODEL, count: int = COUNT) -> PhotoStore:
    store = PhotoStore(url, table)
    store.ensure_table(DIM, model)
    store.ensure_library_tables()
    store.insert_photos([make_photo(i) for i in range(count)], unit_vectors(count, 3))
    store.insert_thumbnails([(f"photo-{i:04d}", bytes([i % 256]) * 40) for i in range(0, count, 10)])
    store.record_files([(f"/pics/{i}.jpg", f"photo-{i:04d}", 1000 + i, 1.5 * i) for i in range(0, count, 7)])
    return store


def searches(store: PhotoStore) -> list:
    queries = unit_vectors(5, 99)
    found = [[(r["photo_id"], r["score"]) for r in store.search(q, top_k=20)] for q in queries]
    found.append([(r["photo_id"], r["score"]) for r in store.search(queries[0], top_k=10,
                                                                     filters={"photo_location_country": "Japan"})])
    found.append([(r["photo_id"], r["score"]) for r in store.more_like("photo-0007", top_k=10)])
    return found


@pytest.fixture(scope="module")
def library(store_url, tmp_path_factory):
    """The library filled, a neighbour library whose name extends it, and one backup made by the command."""
    store = fill(store_url, TABLE)
    fill(store_url, TABLE + "_demo", count=20)  # another library: never part of photos_bk's backup
    before = searches(store)
    directory = tmp_path_factory.mktemp("backups")
    env = {"STORE_URL": store_url, "STORE_TABLE": TABLE, "BACKUP_DIR": str(directory)}
    result = run_tool("tools.backup", env=env)
    assert result.returncode == 0, result.stderr
    [folder] = list(directory.iterdir())
    assert f"backed up {COUNT + COUNT // 10 + (COUNT + 6) // 7 + 1} rows" in result.stdout
    return {"url": store_url, "folder": folder, "before": before, "env": env}


def test_a_backup_restored_into_a_wiped_store_answers_the_same_searches(library):
    manifest = json.loads((library["folder"] / "manifest.json").read_text())
    assert manifest["model"] == {"model": MODEL, "dim": DIM}
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {
        TABLE: COUNT, f"{TABLE}_files": (COUNT + 6) // 7, f"{TABLE}_meta": 1, f"{TABLE}_thumbs": COUNT // 10}
    with StoreHttp(library["url"]) as http:  # wipe the library
        for table in manifest["tables"]:
            http.command("drop", f"DROP TABLE {http.ref(table['name'])} SYNC")
    assert PhotoStore(library["url"], TABLE).count() == 0

    result = run_tool("tools.restore", str(library["folder"]), env=library["env"])
    assert result.returncode == 0, result.stderr
    assert f"restored {manifest['rows']} rows of {TABLE}" in result.stdout
    restored = PhotoStore(library["url"], TABLE)
    assert searches(restored) == library["before"]  # same ids, same ranks, same scores
    assert restored.table_info()["model"] == MODEL
    assert restored.get_thumbnail("photo-0010") == bytes([10]) * 40
    assert [f["path"] for f in restored.files_under("/pics/", limit=3)] == ["/pics/0.jpg", "/pics/105.jpg",
                                                                            "/pics/112.jpg"]
    assert PhotoStore(library["url"], TABLE + "_demo").count() == 20


def damaged(folder: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    change(copy)
    return copy


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def newer(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))


REFUSALS = {
    "damaged file": (lambda f: flip_byte(f / f"{TABLE}.native.zst"),
                     f"{TABLE}.native.zst does not match its checksum in manifest.json: the file is damaged, "
                     "nothing was restored"),
    "missing file": (lambda f: (f / f"{TABLE}_thumbs.native.zst").unlink(),
                     f"{TABLE}_thumbs.native.zst is missing: this backup is incomplete, nothing was restored"),
    "partial backup": (lambda f: (f / "manifest.json").unlink(), "is not a complete backup"),
    "newer version": (newer, "was written by a newer version (backup format 99; this one reads 1 and older)"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_damaged_partial_or_newer_backup_is_refused_and_nothing_is_written(library, tmp_path, case):
    change, sentence = REFUSALS[case]
    folder = damaged(library["folder"], tmp_path, change)
    before = snapshot(library["url"])
    result = run_tool("tools.restore", str(folder), "--replace", env={**library["env"], "STORE_TABLE": "photos_new"})
    assert result.returncode == 1
    assert sentence in result.stderr
    assert snapshot(library["url"]) == before


def test_a_store_that_is_not_empty_needs_replace(library):
    before = snapshot(library["url"])
    result = run_tool("tools.restore", str(library["folder"]), env=library["env"])
    assert result.returncode == 1
    assert (f"The store is not empty ({TABLE} ({COUNT} rows), {TABLE}_files ({(COUNT + 6) // 7} rows), "
            f"{TABLE}_meta (1 row), {TABLE}_thumbs ({COUNT // 10} rows)); nothing was restored. Run again with "
            "ARGS=--replace") in result.stderr
    assert snapshot(library["url"]) == before
    PhotoStore(library["url"], TABLE).delete_photos(["photo-0001"])
    replaced = run_tool("tools.restore", str(library["folder"]), "--replace", env=library["env"])
    assert replaced.returncode == 0, replaced.stderr
    assert PhotoStore(library["url"], TABLE).get_photo("photo-0001") is not None


def test_a_backup_of_another_model_is_refused_even_with_replace(library):
    PhotoStore(library["url"], "photos_siglip").ensure_table(DIM, "google/siglip-base")
    before = snapshot(library["url"])
    result = run_tool("tools.restore", str(library["folder"]), "--replace",
                      env={**library["env"], "STORE_TABLE": "photos_siglip"})
    assert result.returncode == 1
    assert (f"This backup's vectors come from {MODEL} ({DIM} dimensions) but default.photos_siglip holds vectors "
            f"of google/siglip-base ({DIM} dimensions); nothing was restored.") in result.stderr
    assert snapshot(library["url"]) == before


def test_the_schedule_keeps_backup_keep_copies_and_one_worker_per_interval(library, tmp_path, monkeypatch):
    from services.worker import backups as worker_backups
    from services.worker.config import get_settings

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    client.delete(worker_backups.lock_key(TABLE))
    monkeypatch.setenv("STORE_URL", library["url"])
    monkeypatch.setenv("STORE_TABLE", TABLE)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path))
    monkeypatch.setenv("BACKUP_EVERY", "2s")
    monkeypatch.setenv("BACKUP_KEEP", "2")
    get_settings.cache_clear()
    made: list[tuple[float, Path]] = []
    original = BackupSchedule.run_once

    def counted(self):
        began = time.monotonic()
        path = original(self)
        if path is not None:
            made.append((began, path))
        return path

    monkeypatch.setattr(BackupSchedule, "run_once", counted)
    worker_backups.on_worker_ready()
    # A second worker's timer on the same Redis lock.
    second = BackupSchedule(library["url"], TABLE, tmp_path, 2, 2, claim=lambda: bool(client.set(
        worker_backups.lock_key(TABLE), "other", nx=True, px=1800))).start()
    try:
        deadline = time.monotonic() + 60
        while len(made) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker_backups.on_worker_shutdown()
        second.stop(timeout=30)
        get_settings.cache_clear()
    assert len(made) >= 4
    kept = sorted(path.name for path in tmp_path.iterdir())
    assert kept == sorted(path.name for _, path in made)[-2:]  # the newest BACKUP_KEEP, the rest deleted
    # Two timers, one lock: never two backups in one interval (the lock holds for 0.9 of it).
    starts = sorted(began for began, _ in made)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 1.7
