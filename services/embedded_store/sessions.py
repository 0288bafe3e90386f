"""A client session's own chDB handle: its current database and its settings, with per-query URL
settings laid over them and taken back before the next statement that changes the session."""
from __future__ import annotations

import json
import threading
import time

from services.embedded_store.chdb_adapter import ChdbConnection
from services.embedded_store.protocol import DEFAULT_FORMAT


def quote_literal(value: str) -> str:
    """A ClickHouse string literal. Only for SET, which takes no bound parameters; ClickHouse
    converts a quoted literal to the setting's type."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Session:
    def __init__(self, handle: ChdbConnection, timeout: float):
        self.handle = handle
        self.timeout = timeout
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.database = "default"  # the session's own (after USE)
        self.current_database = "default"  # what the handle has now
        self.overlay: dict[str, str] = {}  # URL settings applied on top of the session's own
        self.base: dict[str, tuple[str, bool]] = {}  # the session's values under the overlay

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.timeout and not self.lock.locked()

    def use_database(self, database: str) -> None:
        if database != self.current_database:
            self.handle.query(f"USE {quote_identifier(database)}", DEFAULT_FORMAT)
            self.current_database = database

    def apply_overlay(self, wanted: dict[str, str]) -> None:
        """Make the handle's settings the session's own plus `wanted`, with as few SETs as
        possible: a client sends the same settings on every request."""
        stale = [name for name in self.overlay if name not in wanted]
        changed = {name: value for name, value in wanted.items() if self.overlay.get(name) != value}
        unseen = [name for name in changed if name not in self.base]
        if unseen:
            rows = self.handle.query(
                "SELECT name, value, changed FROM system.settings WHERE name IN {names:Array(String)}",
                "JSONCompact", {"names": "[" + ",".join(quote_literal(n) for n in unseen) + "]"},
            )
            for name, value, was_changed in json.loads(rows.data() or b'{"data": []}')["data"]:
                self.base[name] = (value, bool(int(was_changed)))
        assignments = [self._restore_expr(name) for name in stale]
        assignments += [f"{name} = {quote_literal(value)}" for name, value in changed.items()]
        if assignments:
            self.handle.query("SET " + ", ".join(assignments), DEFAULT_FORMAT)
        for name in stale:
            self.overlay.pop(name, None)
            self.base.pop(name, None)
        self.overlay.update(changed)

    def drop_overlay(self) -> None:
        self.apply_overlay({})

    def _restore_expr(self, name: str) -> str:
        value, was_changed = self.base.get(name, ("", False))
        return f"{name} = {quote_literal(value)}" if was_changed else f"{name} = DEFAULT"
