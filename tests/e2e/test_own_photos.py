"""Your own photos, end to end: plain `python -m tools.ingest <folder>` on two folders under the library
root and one outside it (uploaded), with every service its own process (the e2e conftest's stack).

Two folders hold same-named different pictures plus one identical copy; each photo is found by search,
its thumbnail loads from the gateway after the ingest command has exited, a re-run adds nothing, and
--prune and DELETE remove photos.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.common.library import content_id
from tests.e2e.conftest import API_KEY
from tests.support import free_port, redis_server
from tools.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


def picture(color: tuple[int, int, int], size=(400, 300)) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], 255 - color[1], 255 - color[2]), (50, 50, 150, 150))
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


class Library:
    def __init__(self, api_url: str, env: dict[str, str], root: Path, outside: Path):
        self.api_url, self.env, self.root, self.outside = api_url, env, root, outside

    def ingest(self, folder: Path, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "tools.ingest", str(folder), *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def photos(self) -> int:
        return httpx.get(f"{self.api_url}/v1/stats", timeout=10).json()["photos"]

    def search_ids(self) -> dict[str, dict]:
        response = httpx.post(f"{self.api_url}/v1/search", json={"text": "a photo", "top_k": 50}, timeout=30)
        assert response.status_code == 200, response.text
        return {result["photo_id"]: result for result in response.json()["results"]}


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("own-photos")
    root, outside = workdir / "Pictures", workdir / "laptop"
    for folder in (root / "2023", root / "2024", outside):
        folder.mkdir(parents=True)
    with redis_server(workdir) as redis_url:
        ports = {name: free_port() for name in ("api", "embedder", "store", "ui")}
        env = {
            "REDIS_URL": redis_url, "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(workdir / "store"), "STORE_TABLE": "photos_own",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}", "EMBEDDER_MODEL": str(tiny_model_dir),
            "API_URL": f"http://127.0.0.1:{ports['api']}", "API_KEYS": API_KEY, "UI_PORT": str(ports["ui"]),
            "LIBRARY_ROOTS": str(root), "FETCH_ALLOW_HOSTS": "", "WORKER_CONCURRENCY": "2",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=ROOT / "test-output" / "own-photos-logs", run_dir=workdir / "run")
        stack.start(timeout=180)
        try:
            yield Library(env["API_URL"], stack.env, root, outside)
        finally:
            stack.stop()


def test_folders_copies_search_thumbnails_rerun_prune_and_delete(library):
    a, b = library.root / "2023", library.root / "2024"
    red, green, blue = picture((200, 30, 30)), picture((30, 200, 30)), picture((30, 30, 200))
    (a / "IMG_0001.jpg").write_bytes(red)
    (a / "IMG_0002.jpg").write_bytes(green)
    (b / "IMG_0001.jpg").write_bytes(blue)  # same name as in 2023, another picture
    (b / "IMG_0002 copy.jpg").write_bytes(green)  # the same picture as 2023's IMG_0002
    (b / "notes.jpg").write_text("not a picture")  # fails alone, with its reason

    first = library.ingest(a)
    assert "2 ingested" in first.stdout and "read by the workers" in first.stdout, first.stdout
    second = library.ingest(b)
    output = second.stdout + second.stderr
    assert "1 ingested, 1 skipped" in output and "1 failed" in output, output
    assert "IMG_0002 copy.jpg = " in output and str(a / "IMG_0002.jpg") in output, output
    assert "not_an_image" in output and "notes.jpg" in output, output
    assert library.photos() == 3

    # Every photo is found, and its thumbnail loads from the gateway (the ingest command is gone).
    found = library.search_ids()
    assert set(found) == {content_id(red), content_id(green), content_id(blue)}
    for photo in found.values():
        thumb = httpx.get(library.api_url + photo["thumbnail_url"], timeout=10)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) == 320
        again = httpx.get(library.api_url + photo["thumbnail_url"], headers={"If-None-Match": thumb.headers["etag"]},
                          timeout=10)
        assert again.status_code == 304
        original = httpx.get(library.api_url + photo["photo_image_url"], timeout=10)
        assert original.status_code == 200 and original.content in (red, green, blue)

    # A re-run adds nothing and reads nothing.
    rerun = library.ingest(a)
    assert "Nothing new" in rerun.stdout and "2 files are unchanged" in rerun.stdout, rerun.stdout
    assert library.photos() == 3

    # A folder the workers may not read is uploaded; its copy of a stored picture is one photo.
    (library.outside / "from-laptop.jpg").write_bytes(picture((220, 220, 20)))
    (library.outside / "red again.jpg").write_bytes(red)
    uploaded = library.ingest(library.outside)
    assert "Uploading the files" in uploaded.stderr and "1 ingested, 1 skipped" in uploaded.stdout, uploaded.stdout
    yellow = library.search_ids()[content_id(picture((220, 220, 20)))]
    assert yellow["photo_image_url"] == yellow["thumbnail_url"]
    assert httpx.get(library.api_url + yellow["thumbnail_url"], timeout=10).status_code == 200
    assert library.photos() == 4

    # --prune: the blue picture's file is gone, so is the photo; green stays (2023 still has it).
    (b / "IMG_0001.jpg").unlink()
    (b / "IMG_0002 copy.jpg").unlink()
    pruned = library.ingest(b, "--prune")
    assert "Pruned 2 files" in pruned.stdout and "1 photos" in pruned.stdout, pruned.stdout
    assert set(library.search_ids()) == {content_id(red), content_id(green), content_id(picture((220, 220, 20)))}

    # DELETE needs the key, removes the photo and its thumbnail.
    target = content_id(red)
    assert httpx.delete(f"{library.api_url}/v1/photos/{target}", timeout=10).status_code == 401
    deleted = httpx.delete(f"{library.api_url}/v1/photos/{target}", headers={"X-API-Key": API_KEY}, timeout=10)
    assert deleted.status_code == 200, deleted.text
    assert httpx.get(f"{library.api_url}/v1/photos/{target}/thumbnail", timeout=10).status_code == 404
    assert target not in library.search_ids()
    gone = httpx.delete(f"{library.api_url}/v1/photos/{target}", headers={"X-API-Key": API_KEY}, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "photo_not_found"
