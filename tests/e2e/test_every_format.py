"""A phone's and a camera's folder, end to end: plain `python -m tools.ingest <folder>` on JPEGs, HEIC,
AVIF, PNG (8-bit, palette, 16-bit), WebP, CMYK JPEG, a 12,000-px panorama, multi-page TIFF, 16-bit TIFF,
animated GIF, a DNG and five short videos (MP4, MOV, MKV, WebM, AVI), beside a damaged HEIC, a RAW that
cannot be demosaiced, a text file named .heic, a truncated JPEG, a video too long, one with no decodable
frame, a text file named .mp4, a text file and a sidecar .xmp. Every photo is found by search, every thumbnail
loads, the summary accounts for every file and each bad file fails with its code.
"""
from __future__ import annotations

import io
import subprocess
import sys

import httpx
import pytest
from PIL import Image

from services.common.library import content_id
from tests.e2e.conftest import API_KEY
from tests.media_samples import bad_photos, bad_videos, good_photos, good_videos
from tests.support import free_port, redis_server
from tools.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt><rdf:li>Harbour at dawn'
       '</rdf:li></rdf:Alt></dc:title><dc:subject><rdf:Bag><rdf:li>boats</rdf:li></rdf:Bag></dc:subject>'
       '</rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("every-format")
    root = workdir / "Pictures"
    root.mkdir()
    with redis_server(workdir) as redis_url:
        ports = {name: free_port() for name in ("api", "embedder", "store", "ui")}
        env = {
            "REDIS_URL": redis_url, "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(workdir / "store"), "STORE_TABLE": "photos_formats",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}", "EMBEDDER_MODEL": str(tiny_model_dir),
            "API_URL": f"http://127.0.0.1:{ports['api']}", "API_KEYS": API_KEY, "UI_PORT": str(ports["ui"]),
            "LIBRARY_ROOTS": str(root), "FETCH_ALLOW_HOSTS": "", "WORKER_CONCURRENCY": "2",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WORKER_VIDEO_MAX_SECONDS": "20",
        }
        stack = Stack(env=env, log_dir=ROOT / "test-output" / "every-format-logs", run_dir=workdir / "run")
        stack.start(timeout=180)
        try:
            yield stack.env, root
        finally:
            stack.stop()


def test_a_phone_and_camera_folder_is_ingested_and_every_file_accounted_for(stack_env):
    env, root = stack_env
    api = env["API_URL"]
    folder = root / "phone"
    folder.mkdir()
    photos, videos = good_photos(), good_videos()
    good, bad = {**photos, **videos}, {**bad_photos(), **bad_videos()}
    for name, data in good.items():
        (folder / name).write_bytes(data)
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("a shopping list")
    (folder / "DSC_0001.xmp").write_text(XMP)

    result = subprocess.run([sys.executable, "-m", "tools.ingest", str(folder), "--verbose"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    failed = len(bad)
    total = len(good) + failed
    assert f"{len(good)} ingested, 0 skipped (already stored), {failed} failed, of {total}" in output, output
    for code in {code for _, code in bad.values()}:
        assert code in output, (code, output)
    assert (f"Every file accounted for: {total + 2} files met: {len(good)} ingested, 0 copies or already stored, "
            f"{failed} failed, 0 unchanged, 0 unreadable, 2 not a photo or video (.txt 1, .xmp 1).") in output, output
    assert "not a photo or video: notes.txt" in output and "1 .xmp sidecars were read" in output, output

    response = httpx.post(f"{api}/v1/search", json={"text": "a photo", "top_k": 50}, timeout=30)
    assert response.status_code == 200, response.text
    found = {result["photo_id"]: result for result in response.json()["results"]}
    assert set(found) == {content_id(data) for data in good.values()}
    for photo in found.values():
        thumb = httpx.get(api + photo["thumbnail_url"], timeout=10)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320
    heic = found[content_id(good["IMG_1001.HEIC"])]
    assert heic["exif_camera_model"] == "iPhone 15" and heic["taken_at"].startswith("2023-07-14T09:30:00")
    raw = found[content_id(good["DSC_0001.dng"])]
    assert raw["photo_description"] == "Harbour at dawn" and raw["photo_keywords"] == "boats"
    assert raw["exif_camera_make"] == "TestCam"

    # Videos: one result each, marked, with their length and the time of the frame shown; the kind filter.
    for data in videos.values():
        clip = found[content_id(data)]
        assert clip["kind"] == "video" and clip["duration_s"] == 6.0 and clip["frame_s"] in (0.0, 2.0, 3.0, 5.0)
    assert {found[content_id(data)]["kind"] for data in photos.values()} == {"photo"}
    for kind, expected in (("video", videos), ("photo", photos)):
        answer = httpx.post(f"{api}/v1/search", json={"text": "a photo", "top_k": 50, "kind": kind}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert {r["photo_id"] for r in answer.json()["results"]} == {content_id(d) for d in expected.values()}
    searched = subprocess.run([sys.executable, "-m", "tools.search", "a clip", "--kind", "video", "--top-k", "3"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert searched.returncode == 0 and searched.stdout.count("(video, 0:0") == 3, searched.stdout + searched.stderr
