"""Unit tests of calibrated relevance (services/api/relevance.py): a score as the share of a sample that is
less similar, `min_relevance` as a cosine threshold, and the sample kept until the table changes."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.api import relevance
from tests.fakes import FakeStore
from tests.unit.api_support import DIM, GatewayFakes, gateway_client


def calibration(similarities) -> relevance.Calibration:
    return relevance.Calibration(np.sort(np.asarray(similarities, dtype=np.float32)))


def test_relevance_is_the_share_of_the_sample_below_the_score_and_grows_with_it():
    calibrated = calibration(np.arange(100) / 100)  # 0.00, 0.01, ..., 0.99
    assert calibrated.relevance(-1.0) == 0.0
    assert calibrated.relevance(0.005) == pytest.approx(0.01)
    assert calibrated.relevance(0.5) == pytest.approx(0.50)  # 0.00 .. 0.49 are below; 0.50 itself is not
    assert calibrated.relevance(1.0) == 1.0
    scores = np.linspace(-1, 1, 401)
    values = [calibrated.relevance(s) for s in scores]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] == 1.0


def test_min_relevance_becomes_the_samples_quantile():
    calibrated = calibration(np.arange(100) / 100)
    threshold = calibrated.threshold(0.99)
    assert 0.98 < threshold < 0.981  # just above the 99th smallest similarity
    assert calibrated.relevance(threshold) >= 0.99 > calibrated.relevance(0.98)
    assert calibrated.threshold(0.0) is None  # everything passes
    assert calibrated.threshold(1.0) > 0.99  # nothing in the sample passes
    assert relevance.min_score(None, 0.99, calibrated) == threshold
    assert relevance.min_score(0.995, 0.99, calibrated) == 0.995  # the stricter of the two
    assert relevance.min_score(0.2, None, calibrated) == 0.2
    assert relevance.min_score(0.2, 0.99, None) == 0.2  # no sample: min_relevance asks nothing


def test_calibrate_needs_a_sample_of_the_query_size():
    vector = np.ones(4, np.float32)
    assert relevance.calibrate(None, vector) is None
    assert relevance.calibrate(np.zeros((0, 0), np.float32), vector) is None
    assert relevance.calibrate(np.ones((3, 5), np.float32), vector) is None
    calibrated = relevance.calibrate(np.eye(4, dtype=np.float32), vector)
    assert calibrated.similarities.tolist() == pytest.approx([0.5] * 4)  # the query is normalised first


def test_the_sample_is_read_again_only_when_the_table_changes():
    versions = iter([(1,), (1,), (2,)])
    reads = []

    def read(n):
        reads.append(n)
        return np.eye(3, dtype=np.float32)

    keeper = relevance.SampleKeeper(read, lambda: next(versions), 7, check_every_s=0)
    table = {"table": "photos", "model": "m", "dim": 3}

    async def three():
        for _ in range(3):
            await keeper.get(table)

    asyncio.run(three())
    assert reads == [7, 7]  # version 1 twice (read once), then version 2
    waiting = relevance.SampleKeeper(read, lambda: (3,), 7, check_every_s=3600)
    asyncio.run(waiting.get(table))
    asyncio.run(waiting.get(table))
    assert waiting.reads == 1  # within the check interval the version is not even asked


class SampledStore(FakeStore):
    """The fake store with the real store's sample read: every stored vector, in id order."""

    def sample_vectors(self, n: int) -> np.ndarray:
        vectors = [self.photos[p][1] for p in sorted(self.photos)][:n]
        return np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)


def test_results_carry_relevance_and_min_relevance_keeps_the_closest(monkeypatch):
    fakes = GatewayFakes()
    fakes.store = SampledStore()
    rng = np.random.default_rng(3)
    for number in range(200):
        fakes.store.add(f"p{number:03d}", rng.normal(size=DIM))
    with gateway_client(fakes) as client:
        body = client.post("/v1/search", json={"photo_id": "p007", "top_k": 100}).json()
        values = [r["relevance"] for r in body["results"]]
        # The photo itself is in the sample: 199 of the 200 are less similar to it than itself.
        assert values == sorted(values, reverse=True) and values[0] == 0.995
        assert all(0 <= v <= 1 for v in values)
        kept = client.post("/v1/search", json={"photo_id": "p007", "top_k": 100, "min_relevance": 0.95}).json()
        # The sample is the whole library here: 5% of 200 photos are closer than 95% of it.
        assert len(kept["results"]) == 10 and all(r["relevance"] >= 0.95 for r in kept["results"])


def test_no_sample_means_null_relevance():
    fakes = GatewayFakes()  # the plain fake has no sample read
    with gateway_client(fakes) as client:
        body = client.post("/v1/search", json={"text": "red", "top_k": 2, "min_relevance": 0.99}).json()
    assert [r["relevance"] for r in body["results"]] == [None, None]
    empty = GatewayFakes()
    empty.store = SampledStore()
    with gateway_client(empty) as client:
        assert client.post("/v1/search", json={"text": "red"}).json()["results"] == []
