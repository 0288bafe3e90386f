"""Run the embedded store: `python -m services.embedded_store --host H --port P --data-dir DIR`.

Serves the ClickHouse HTTP interface (see services/embedded_store/server.py) over one chDB data folder.
Exits non-zero when the folder is in use by another store process or the port cannot be bound;
stops gracefully on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from services.embedded_store.config import StoreSettings
from services.embedded_store.engine import StoreEngine
from services.embedded_store.lock import DataDirBusy, DataDirLock
from services.embedded_store.server import create_app

log = logging.getLogger("services.embedded_store")


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM/SIGINT after shutdown, which would kill the process
    before the engine is closed and the folder unlocked; stop gracefully and exit 0 instead."""

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            log.info("signal %s: finishing running requests, then closing the store", sig)
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.embedded_store", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to listen on (STORE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (STORE_PORT, default 8123)")
    parser.add_argument("--data-dir", type=Path, help="chDB data folder (STORE_DATA_DIR, default <project>/data/store)")
    parser.add_argument("--log-level", help="logging level (STORE_LOG_LEVEL, default INFO)")
    return parser.parse_args(argv)


def serve(settings: StoreSettings) -> int:
    """Lock the folder, open chDB, serve until a signal; the exit status for the shell."""
    try:
        lock = DataDirLock(settings.data_dir).acquire()
    except DataDirBusy as busy:
        log.error("%s", busy)
        return 3
    engine = StoreEngine(settings.data_dir, idle_handles=settings.idle_handles,
                         session_timeout=settings.session_timeout_s, max_sessions=settings.max_sessions)
    try:
        engine.open()
        log.info("store serving %s on http://%s:%s", settings.data_dir, settings.host, settings.port)
        app = create_app(settings, engine)
        # uvicorn installs its own SIGTERM/SIGINT handlers: it stops accepting, lets running
        # requests finish, then returns here, where the engine and the lock are released.
        server = _Server(uvicorn.Config(
            app, host=settings.host, port=settings.port, lifespan="on", access_log=False,
            log_config=None, timeout_graceful_shutdown=30, server_header=False,
        ))
        server.run()
        return 0 if server.started else 1
    finally:
        engine.close()
        lock.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port),
                                                   ("data_dir", args.data_dir), ("log_level", args.log_level))
                 if value is not None}
    settings = StoreSettings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
