"""`make backup` (`python -m tools.backup`): one backup of the library (STORE_TABLE at STORE_URL) into a
new folder under BACKUP_DIR (services/backup/ does the work, over the store's HTTP interface)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.backup import BackupError, BackupOptions, backup, read_manifest
from services.common.config import CommonSettings


class BackupSettings(BackupOptions, CommonSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def main(argv: list[str] | None = None) -> int:
    settings = BackupSettings()
    parser = argparse.ArgumentParser(prog="python -m tools.backup", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=settings.backup_dir, help="where (default: BACKUP_DIR)")
    parser.add_argument("--table", default=settings.store_table, help="the library (default: STORE_TABLE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        folder = backup(settings.store_url, args.table, args.dir)
    except BackupError as error:
        print(error, file=sys.stderr)
        return 1
    manifest = read_manifest(folder)
    for table in manifest["tables"]:
        print(f"  {table['name']:<28} {table['rows']:>10} rows  {human_bytes(table['bytes']):>10}")
    print(f"backed up {manifest['rows']} rows ({human_bytes(manifest['bytes'])}) to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
