"""The ingest command stays flat in memory however large its source: a re-run of a folder pages through
the gateway's file listing (the real gateway on a port, fake adapters behind it), and a URL list is read
again from the file to resubmit lost work instead of being kept. Measured with tracemalloc: the peak at
a large size against the peak at a small one."""
from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common import api_client
from services.common.api_client import ApiClient, ApiError
from services.common.library import content_id
from tests.unit.api_support import KEY, GatewayFakes
from tests.unit.gateway_server import served
from tools import folder_ingest, ingest


def peak_bytes(work: Callable[[], object]) -> int:
    """The most memory Python held at once while `work` ran, above what it held before."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def stored_folder(root: Path, name: str, count: int, fakes: GatewayFakes) -> Path:
    """`count` files, 500 a folder, each recorded in the fake store as the last run left it (unchanged)."""
    folder = root / name
    rows = []
    for i in range(count):
        path = folder / f"d{i // 500:03d}" / f"IMG_{i:06d}.jpg"
        if i % 500 == 0:
            path.parent.mkdir(parents=True)
        data = f"picture {name} {i}".encode()
        path.write_bytes(data)
        stat = path.stat()
        rows.append((str(path), content_id(data), stat.st_size, stat.st_mtime))
    fakes.store.record_files(rows)
    return folder


def test_a_rerun_of_a_large_folder_pages_through_the_listing_in_flat_memory(tmp_path, capsys, monkeypatch):
    root = tmp_path / "Pictures"
    root.mkdir()
    fakes = GatewayFakes()
    small, large = stored_folder(root, "small", 1500, fakes), stored_folder(root, "large", 9000, fakes)
    monkeypatch.setattr(folder_ingest, "FILES_PAGE", 500, raising=False)
    asked: list[dict] = []
    with served(fakes, library_roots=str(root)) as url, ApiClient(url, api_key=KEY) as client:
        listing = client.files

        def files(folder, **page):
            asked.append(page)
            return listing(folder, **page)

        client.files = files

        def rerun(folder: Path) -> Callable[[], int]:
            return lambda: ingest.ingest_folder(client, folder, ingest.parse_args([str(folder), "--no-wait"]), False)

        peak_small = peak_bytes(rerun(small))
        assert "1500 files are unchanged" in capsys.readouterr().out
        peak_large = peak_bytes(rerun(large))
        out = capsys.readouterr().out
    assert "9000 files are unchanged" in out and f"Nothing new in {large}" in out
    # Six times the files, about the same peak: the listing is held a page at a time.
    assert peak_large < 1.5 * peak_small, (peak_small, peak_large)
    assert asked and all(page.get("limit") == 500 for page in asked)


class CountingGateway:
    """Stands in for ApiClient: counts the photos each job got, keeps none of them; the first job is lost
    (404), so the command must submit the whole list again."""

    instances: list[CountingGateway] = []

    def __init__(self, base_url: str, **_):
        self.base_url = base_url
        self.photos: dict[str, int] = {}
        self.ids: dict[str, int] = {}  # one hash of the ids per job, to see the same photos came again
        CountingGateway.instances.append(self)

    def stats(self) -> dict:
        return {"photos": 0, "random_weights": False}

    def ingest(self, photos: list[dict], job_id: str | None = None, batch_size: int | None = None) -> dict:
        job_id = job_id or f"job-{len(self.photos) + 1}"
        self.photos[job_id] = self.photos.get(job_id, 0) + len(photos)
        self.ids[job_id] = self.ids.get(job_id, 0) ^ hash(frozenset(photo["photo_id"] for photo in photos))
        return {"job_id": job_id, "photos": len(photos), "batches": 1}

    def job(self, job_id: str, **_) -> dict:
        if job_id == "job-1":
            raise ApiError(404, "job_not_found", f"No job {job_id} is known.")
        done = self.photos[job_id]
        return {"job_id": job_id, "state": "done", "total": done, "succeeded": done, "skipped": 0, "failed": 0,
                "batches_total": 1, "batches_done": 1, "failures": []}

    def close(self) -> None:
        pass


def url_list(path: Path, count: int) -> Path:
    with open(path, "w") as out:
        out.write("# my photos\nnot a url\n")
        for i in range(count):
            out.write(f"https://img.test/photos/{i:08d}/a-rather-long-name-as-real-ones-are.jpg\n")
    return path


def test_a_large_list_is_read_again_to_resubmit_lost_work_in_flat_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(api_client, "ApiClient", CountingGateway)
    monkeypatch.delenv("API_KEY", raising=False)
    small, large = url_list(tmp_path / "small.txt", 4000), url_list(tmp_path / "large.txt", 40000)
    peaks = {}
    for name, path in (("small", small), ("large", large)):
        CountingGateway.instances.clear()
        peaks[name] = peak_bytes(lambda path=path: ingest.main([str(path), "--poll-interval", "0",
                                                               "--api-url", "http://127.0.0.1:9"]))
        gateway = CountingGateway.instances[-1]
        count = 4000 if name == "small" else 40000
        # Lost, then every photo again as a new job, the same ones.
        assert gateway.photos == {"job-1": count, "job-2": count}
        assert gateway.ids["job-1"] == gateway.ids["job-2"]
        err = capsys.readouterr().err
        assert "is gone (Redis lost it)" in err
        # The bad line is reported once, not again when the list is read a second time.
        assert err.count("line 2: 'not a url' is not an http(s) URL") == 1, err
    # Ten times the rows, about the same peak: no record is kept to resubmit.
    assert peaks["large"] < 1.5 * peaks["small"], peaks


@pytest.fixture(autouse=True)
def _no_tqdm_monitor(monkeypatch):
    """tqdm's monitor thread allocates on its own schedule; the measured peaks should not depend on it."""
    import tqdm

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
