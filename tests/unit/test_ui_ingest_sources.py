"""The Ingest tab's other sources (ui/ingest_tab.py): photos dropped on the page are uploaded through
the gateway's upload route, as `make ingest` uploads a folder's files, and a folder on the server under
LIBRARY_ROOTS, chosen by its path, is sent as paths the workers read. Driven with a fake client."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from tests.unit.ui_support import FakeClient
from ui.formatting import markdown_text
from ui.ingest_tab import HELP, IngestPanel

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class LibraryClient(FakeClient):
    """FakeClient with the gateway's upload and file-listing routes."""

    def __init__(self, readable: bool = True, known: list[dict] | None = None):
        super().__init__()
        self.readable = readable
        self.known = known or []
        self.uploads: list[dict] = []

    def upload(self, files, job_id=None, batch_size=None):
        self._answer("upload", job_id=job_id, batch_size=batch_size)
        self.uploads += [{"name": name, "bytes": body.read(), **described} for name, body, described in files]
        return {"job_id": job_id or "job-1", "photos": len(files), "batches": 1}

    def files(self, folder, after=None, limit=None):
        self._answer("files", folder=folder)
        reason = None if self.readable else f"{folder} is not under the library roots (/srv/photos), so the workers " \
                                               "may not read it."
        return {"folder": folder, "readable": self.readable, "reason": reason, "files": list(self.known), "next": None}


def _photo(path, color) -> str:
    Image.new("RGB", (8, 8), color).save(path)
    return str(path)


def test_the_help_says_what_the_page_takes_today():
    assert "--serve" not in HELP and "cannot be ingested" not in HELP
    for words in ("photos", "URL list", "photos.tsv", "folder", "LIBRARY_ROOTS"):
        assert words in HELP


def test_dropped_photos_are_uploaded_as_one_job_and_watched(tmp_path):
    client = LibraryClient()
    paths = [_photo(tmp_path / "beach.jpg", "blue"), _photo(tmp_path / "door.png", "red")]
    out = IngestPanel(client).start(paths)
    assert [(upload["name"], upload["path"]) for upload in client.uploads] == [("beach.jpg", "beach.jpg"),
                                                                               ("door.png", "door.png")]
    assert client.uploads[0]["bytes"] == (tmp_path / "beach.jpg").read_bytes()
    assert client.uploads[1]["size"] == os.path.getsize(paths[1]) and client.uploads[1]["mtime"] > 0
    assert ("upload", {"job_id": None, "batch_size": 32}) in client.calls and client.ingested == []
    assert out["ingest_status"] == "Submitted 2 photos from beach.jpg, door.png as job `job-1` (uploaded)."
    assert out["ingest_job"] == {"job_id": "job-1", "submitted": 2} and out["ingest_timer"].active is True


def test_photos_and_a_url_list_dropped_together_go_into_one_job(tmp_path):
    client = LibraryClient()
    urls = tmp_path / "more.txt"
    urls.write_text("http://img.test/a.jpg\n")
    out = IngestPanel(client).start([str(urls), _photo(tmp_path / "cat.jpg", "white")])
    assert [photo["photo_image_url"] for photo in client.ingested] == ["http://img.test/a.jpg"]
    assert ("upload", {"job_id": "job-1", "batch_size": 32}) in client.calls
    assert out["ingest_job"] == {"job_id": "job-1", "submitted": 2}
    assert out["ingest_status"].startswith("Submitted 2 photos from more.txt, cat.jpg as job `job-1`")


def test_a_file_that_is_neither_a_photo_nor_a_list_is_named(tmp_path):
    client = LibraryClient()
    odd = tmp_path / "notes.pdf"
    odd.write_bytes(b"%PDF-1.4")
    out = IngestPanel(client).start([str(odd)])
    assert "notes.pdf" in out["ingest_status"] and "ingest_job" not in out and client.uploads == []


def test_a_folder_under_the_library_roots_is_sent_as_paths_the_workers_read(tmp_path):
    folder = tmp_path / "holiday"
    (folder / "day1").mkdir(parents=True)
    _photo(folder / "day1" / "sea.jpg", "navy")
    _photo(folder / "sun.jpg", "yellow")
    client = LibraryClient()
    out = IngestPanel(client).start_folder(f"  {folder}  ")
    assert ("files", {"folder": str(folder)}) in client.calls and client.uploads == []
    urls = sorted(photo["photo_image_url"] for photo in client.ingested)
    assert urls == [f"file://{folder}/day1/sea.jpg", f"file://{folder}/sun.jpg"]
    assert all(photo["photo_id"].startswith("img-") for photo in client.ingested)
    assert out["ingest_status"] == (f"Submitted 2 photos from {markdown_text(str(folder))} as job `job-1` (read by the "
                                    "workers where they are).")
    assert out["ingest_timer"].active is True


def test_a_folder_run_again_sends_only_new_and_changed_files(tmp_path):
    unchanged = tmp_path / "old.jpg"
    _photo(unchanged, "green")
    stat = unchanged.stat()
    client = LibraryClient(known=[{"path": str(unchanged), "photo_id": "img-x", "size": stat.st_size,
                                   "mtime": stat.st_mtime}])
    out = IngestPanel(client).start_folder(str(tmp_path))
    assert client.ingested == [] and "ingest_job" not in out
    where = markdown_text(str(tmp_path))
    assert out["ingest_status"] == f"Nothing new in {where}: its 1 photo is stored and unchanged."


def test_a_folder_the_workers_may_not_read_or_this_page_cannot_see_is_a_sentence(tmp_path):
    client = LibraryClient(readable=False)
    out = IngestPanel(client).start_folder(str(tmp_path))
    assert "is not under the library roots" in out["ingest_status"] and "drop its photos on this page" in out[
        "ingest_status"]
    assert client.ingested == [] and "ingest_job" not in out
    panel = IngestPanel(LibraryClient())
    assert "Type the path of a folder" in panel.start_folder("  ")["ingest_status"]
    assert "relative" in panel.start_folder("photos/2024")["ingest_status"]
    missing = panel.start_folder(str(tmp_path / "gone"))["ingest_status"]
    assert f"{markdown_text(str(tmp_path / 'gone'))} is not a folder this page can read" in missing
