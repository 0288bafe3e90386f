"""Fixtures for the store server tests: one store process per test module, a client, a photos table."""
from __future__ import annotations

import numpy as np
import pytest

from tests.integration.store_server.harness import DIM, StoreProcess, create_photos_table


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    server = StoreProcess(root / "data", root / "store.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(store):
    client = store.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((2000, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def photos(client, vectors):
    create_photos_table(client, "photos")
    rows = [[i, f"photo-{i}", vectors[i].tolist()] for i in range(len(vectors))]
    summary = client.insert("photos", rows, column_names=["id", "photo_id", "vector"])  # default: lz4
    assert summary.written_rows == len(rows)
    return "photos"
