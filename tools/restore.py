"""`make restore FROM=folder [ARGS=--replace]` (`python -m tools.restore FOLDER`): a backup written by
`make backup` back into the library (STORE_TABLE at STORE_URL), after checking it whole; a damaged,
partial or newer backup, another model's, or a store that is not empty (without --replace) is refused
before anything is written."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from services.backup import BackupError, restore
from tools.backup import BackupSettings


def main(argv: list[str] | None = None) -> int:
    settings = BackupSettings()
    parser = argparse.ArgumentParser(prog="python -m tools.restore", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a backup folder (under BACKUP_DIR)")
    parser.add_argument("--replace", action="store_true", help="replace what the store holds for the library")
    parser.add_argument("--table", default=settings.store_table, help="the library (default: STORE_TABLE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        result = restore(settings.store_url, args.table, args.folder, replace=args.replace)
    except BackupError as error:
        print(error, file=sys.stderr)
        return 1
    for name, rows in result["restored"].items():
        print(f"  {name:<28} {rows:>10} rows")
    model = result.get("model") or {}
    print(f"restored {sum(result['restored'].values())} rows of {args.table} from {args.folder}"
          + (f" (model {model.get('model')}, {model.get('dim')} dimensions)" if model else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
