"""Fixtures the integration tests share."""
from __future__ import annotations

import pytest

from tests.integration.worker_support import serve_images
from tests.support import embedded_store


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """A real embedded store server (a subprocess on a free port) for this test module, on its own data folder."""
    with embedded_store(tmp_path_factory.mktemp("store-data")) as url:
        yield url


@pytest.fixture(scope="module")
def images():
    """A local HTTP server of the generated test JPEGs (worker_support.serve_images) for this module; its URL."""
    server = serve_images()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
