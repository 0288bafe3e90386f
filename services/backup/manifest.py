"""manifest.json: what a backup holds (each table's file, schema, rows and sha256; the model record; the
store's version; this format's version), and the checks a restore makes before it writes anything."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from services.backup.errors import BackupError

NAME = "manifest.json"
# Raise when a backup's layout changes in a way an older restore would misread; a restore refuses a
# backup from a newer version rather than guessing.
FORMAT_VERSION = 1
PARTIAL = ".partial"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the backup in `folder`, or a BackupError saying why there is none to trust."""
    path = folder / NAME
    if not folder.is_dir():
        raise BackupError(f"There is no backup folder at {folder}.")
    if not path.is_file():
        raise BackupError(f"{path} is missing: {folder} is not a complete backup (an interrupted backup "
                          "leaves no manifest).")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        version = int(manifest["format_version"])
        manifest["tables"][0]["file"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise BackupError(f"{path} is damaged and cannot be read ({error}); use another backup.") from error
    if version > FORMAT_VERSION:
        raise BackupError(f"{folder} was written by a newer version (backup format {version}; this one reads "
                          f"{FORMAT_VERSION} and older): restore it with that version.")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names is present with its sha256: a damaged or partial backup is refused."""
    for table in manifest["tables"]:
        for key in ("file", "schema_file"):
            name = table[key]
            path = folder / name
            if not path.is_file():
                raise BackupError(f"{path} is missing: this backup is incomplete, nothing was restored.")
            expected = table["sha256"][key]
            if sha256_of(path) != expected:
                raise BackupError(f"{path} does not match its checksum in {NAME}: the file is damaged, "
                                  "nothing was restored; use another backup.")


def backups_in(directory: Path, table: str) -> list[Path]:
    """The complete backups of library `table` in `directory`, oldest first (names sort by time)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob(f"{table}-*")
                  if path.is_dir() and not path.name.endswith(PARTIAL) and (path / NAME).is_file())


def latest_backup(directory: Path, table: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete backup of `table` and its manifest, or None."""
    for path in reversed(backups_in(directory, table)):
        try:
            return path, json.loads((path / NAME).read_text(encoding="utf-8"))
        except ValueError:
            continue
    return None
