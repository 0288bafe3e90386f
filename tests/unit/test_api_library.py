"""Unit tests of the gateway's routes for your own photos, with fake adapters: paths must lie under the
library roots, uploads are capped and named by their bytes, thumbnails carry an ETag, DELETE needs a key."""
from __future__ import annotations

import json

import pytest

from services.common.library import content_id
from tests.unit.api_support import KEY, GatewayFakes, error_of, gateway_client

WRITE = {"X-API-Key": KEY}


class FakeSpool:
    def __init__(self):
        self.items: dict[str, bytes] = {}

    def put(self, digest, data):
        self.items[digest] = data


@pytest.fixture
def fakes() -> GatewayFakes:
    return GatewayFakes()


@pytest.fixture
def client(fakes, tmp_path):
    (tmp_path / "Pictures").mkdir()
    with gateway_client(fakes, library_roots=str(tmp_path / "Pictures"), max_upload_bytes=2048) as test_client:
        test_client.app.state.upload_spool = FakeSpool()
        yield test_client


def test_paths_are_accepted_only_under_the_library_roots(client, fakes, tmp_path):
    inside = {"photo_id": "img-1", "photo_image_url": f"file://{tmp_path}/Pictures/a.jpg"}
    assert client.post("/v1/ingest", json={"photos": [inside]}, headers=WRITE).status_code == 202
    outside = {"photo_id": "img-2", "photo_image_url": f"file://{tmp_path}/secret/a.jpg"}
    refused = client.post("/v1/ingest", json={"photos": [inside, outside]}, headers=WRITE)
    assert refused.status_code == 422 and error_of(refused)["code"] == "path_outside_library"
    assert "LIBRARY_ROOTS" in error_of(refused)["message"] and f"{tmp_path}/secret/a.jpg" in error_of(refused)["message"]
    forged = {"photo_id": "img-3", "photo_image_url": "upload://" + "0" * 64}
    assert client.post("/v1/ingest", json={"photos": [forged]}, headers=WRITE).status_code == 422
    assert len(fakes.enqueued) == 1


def test_the_files_answer_says_whether_the_workers_may_read_a_folder(client, tmp_path):
    inside = client.get("/v1/files", params={"folder": f"{tmp_path}/Pictures/2023"}, headers=WRITE).json()
    assert inside["readable"] is True and inside["files"] == []
    outside = client.get("/v1/files", params={"folder": "/home/someone/laptop"}, headers=WRITE).json()
    assert outside["readable"] is False and "not under the library roots" in outside["reason"]
    assert client.get("/v1/files", params={"folder": "relative/path"}, headers=WRITE).status_code == 422
    assert client.get("/v1/files", params={"folder": "/x"}).status_code == 401


def test_uploads_are_named_by_their_bytes_and_capped(client, fakes):
    files = [("file", ("a.jpg", b"\xff\xd8 picture a", "image/jpeg")), ("file", ("b.jpg", b"\xff\xd8 b", "image/jpeg"))]
    described = json.dumps([{"path": "/laptop/a.jpg", "size": 13, "mtime": 1.0},
                            {"path": "/laptop/b.jpg", "size": 5, "mtime": 2.0}])
    accepted = client.post("/v1/ingest/upload", files=files, data={"files": described}, headers=WRITE)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["photos"] == 2
    spool = client.app.state.upload_spool
    assert sorted(spool.items.values()) == [b"\xff\xd8 b", b"\xff\xd8 picture a"]
    assert client.post("/v1/ingest/upload", files=files, data={"files": described}).status_code == 401
    mismatched = client.post("/v1/ingest/upload", files=files, data={"files": "[]"}, headers=WRITE)
    assert mismatched.status_code == 422 and error_of(mismatched)["code"] == "invalid_upload"
    big = [("file", ("big.jpg", b"x" * 4096, "image/jpeg"))]
    too_big = client.post("/v1/ingest/upload", files=big, headers=WRITE,
                          data={"files": json.dumps([{"path": "/laptop/big.jpg"}])})
    assert too_big.status_code == 413 and "/laptop/big.jpg" in error_of(too_big)["message"]
    assert content_id(b"\xff\xd8 b").startswith("img-")


def test_thumbnails_have_an_etag_and_a_missing_one_is_a_404(client, fakes):
    fakes.store.thumbnails["red"] = b"\xff\xd8 thumbnail of red"
    first = client.get("/v1/photos/red/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content == b"\xff\xd8 thumbnail of red" and "max-age" in first.headers["cache-control"]
    again = client.get("/v1/photos/red/thumbnail", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    missing = client.get("/v1/photos/nope/thumbnail")
    assert missing.status_code == 404 and error_of(missing)["code"] == "thumbnail_not_found"
    assert client.get("/v1/photos/red").json()["thumbnail_url"] == "/v1/photos/red/thumbnail"
    assert client.get("/v1/photos/red/original").status_code == 404


def test_delete_needs_a_key_and_removes_the_photo_and_its_thumbnail(client, fakes):
    fakes.store.thumbnails["red"] = b"\xff\xd8"
    assert client.delete("/v1/photos/red").status_code == 401
    assert client.delete("/v1/photos/red", headers=WRITE).json() == {"deleted": "red"}
    assert "red" not in fakes.store.photos and "red" not in fakes.store.thumbnails
    again = client.delete("/v1/photos/red", headers=WRITE)
    assert again.status_code == 404 and error_of(again)["code"] == "photo_not_found"


def test_the_files_listing_comes_in_pages_and_an_unpaged_call_is_capped_with_a_cursor(client, fakes, tmp_path):
    from services.api.routes.library import FILES_PAGE_MAX

    folder = f"{tmp_path}/Pictures"
    fakes.store.record_files([(f"{folder}/IMG_{i:02d}.jpg", f"img-{i}", i, 1.0) for i in range(25)]
                             + [(f"{folder}-old/IMG_00.jpg", "img-x", 1, 1.0)])  # a sibling folder: not listed
    pages, after = [], None
    while True:
        params = {"folder": folder, "limit": 10, **({"after": after} if after else {})}
        answer = client.get("/v1/files", params=params, headers=WRITE).json()
        pages.append([row["path"] for row in answer["files"]])
        assert answer["readable"] is True
        after = answer["next"]
        if after is None:
            break
        assert after == pages[-1][-1]
    assert [len(page) for page in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"{folder}/IMG_{i:02d}.jpg" for i in range(25)]
    too_many = client.get("/v1/files", params={"folder": folder, "limit": FILES_PAGE_MAX + 1}, headers=WRITE)
    assert too_many.status_code == 422
    # A caller that asks for no page gets the first FILES_PAGE_MAX files and the cursor to the rest.
    fakes.store.record_files([(f"{folder}/many/{i:05d}.jpg", f"img-m{i}", 1, 1.0) for i in range(FILES_PAGE_MAX)])
    capped = client.get("/v1/files", params={"folder": folder}, headers=WRITE).json()
    assert len(capped["files"]) == FILES_PAGE_MAX and capped["next"] == capped["files"][-1]["path"]
    rest = client.get("/v1/files", params={"folder": folder, "after": capped["next"]}, headers=WRITE).json()
    assert len(rest["files"]) == 25 and rest["next"] is None
