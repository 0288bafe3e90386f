"""Backup settings (BACKUP_DIR, BACKUP_EVERY, BACKUP_KEEP), mixed into the settings of each part that
makes backups (the workers' timer, `make backup`), so that every one reads the same names."""
from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings

from services.common.config import PROJECT_ROOT

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float | None:
    """`24h`, `30m`, `90s`, `7d` (or a plain number of seconds) as seconds; empty means off (None)."""
    text = (text or "").strip().lower()
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"BACKUP_EVERY must be a duration such as 24h, 30m or 90s (or empty for no schedule), "
                         f"not {text!r}.")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class BackupOptions(BaseSettings):
    backup_dir: Path = Field(PROJECT_ROOT / "data" / "backups", validation_alias=AliasChoices("BACKUP_DIR"))
    # Empty: no scheduled backups. The workers run them (services/backup/schedule.py says why there).
    backup_every: str = Field("", validation_alias=AliasChoices("BACKUP_EVERY"))
    # Scheduled backups kept in BACKUP_DIR (the oldest are deleted); `make backup` deletes none.
    backup_keep: int = Field(7, ge=1, validation_alias=AliasChoices("BACKUP_KEEP"))

    @field_validator("backup_every")
    @classmethod
    def _check_every(cls, value: str) -> str:
        parse_every(value)
        return value

    @property
    def backup_every_s(self) -> float | None:
        return parse_every(self.backup_every)
