"""Fixtures the integration tests share."""
from __future__ import annotations

import pytest

from tests.support import embedded_store


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    """A real embedded store server (a subprocess on a free port) for this test module, on its own data folder."""
    with embedded_store(tmp_path_factory.mktemp("store-data")) as url:
        yield url
