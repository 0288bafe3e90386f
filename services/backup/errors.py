"""The one error of backups and restores: a sentence a person can act on."""
from __future__ import annotations


class BackupError(Exception):
    """A backup or restore that cannot go on; `str()` is the sentence to show."""
