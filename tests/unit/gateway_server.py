"""The gateway with fake adapters on a real port and chosen settings, for tests whose client must speak
real HTTP to it (ApiClient, the ingest command)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from services.api.main import create_app
from tests.support import free_port
from tests.unit.api_support import GatewayFakes, make_settings


@contextmanager
def served(fakes: GatewayFakes, **settings) -> Iterator[str]:
    """Yields the gateway's URL; `settings` as ApiSettings takes them (rate_limit, library_roots, ...)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(make_settings(**settings), services=fakes.services()),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
