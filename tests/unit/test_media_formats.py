"""services/media and the worker's use of it: every photo format a phone or camera makes becomes a
picture and a thumbnail, EXIF is read where the format carries it, and each bad file fails with its code."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.common.images import ImageRejected
from services.common.schemas import LocalFile, PhotoRecord
from services.media.decode import decode_image
from services.media.exif import read_exif
from services.media.xmp import read_sidecar
from services.worker.local import make_thumbnail
from services.worker.media import embeddable
from tests.media_samples import bad_photos, bad_videos, good_photos, good_videos
from tools.folder_ingest import accounting, scan

GOOD = good_photos()
LIMITS = {"max_bytes": 50 << 20, "max_pixels": 64_000_000}


def record(name: str) -> PhotoRecord:
    return PhotoRecord(photo_id="p", photo_image_url=f"file:///photos/{name}", file=LocalFile(path=f"/photos/{name}"))


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_format_becomes_a_picture_and_a_thumbnail(name):
    body = embeddable(record(name), GOOD[name], max_pixels=LIMITS["max_pixels"])
    picture = decode_image(body, **LIMITS)
    assert picture.mode == "RGB" and min(picture.size) > 0
    thumbnail = Image.open(io.BytesIO(make_thumbnail(body, **LIMITS)))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 320
    # Not a blank picture: the generated scenes have many colours.
    assert len(np.unique(np.asarray(thumbnail.convert("RGB")).reshape(-1, 3), axis=0)) > 4


def test_first_frame_of_multi_page_and_animated_files():
    first_tiff = decode_image(GOOD["pages.tiff"], **LIMITS).getpixel((5, 5))
    assert first_tiff == Image.open(io.BytesIO(GOOD["pages.tiff"])).convert("RGB").getpixel((5, 5))
    gif = Image.open(io.BytesIO(GOOD["moving.gif"]))
    assert gif.n_frames == 2
    assert decode_image(GOOD["moving.gif"], **LIMITS).getpixel((5, 5)) == gif.convert("RGB").getpixel((5, 5))


def test_exif_from_heic_and_from_a_raw_header():
    assert read_exif(GOOD["IMG_1001.HEIC"]) == {"exif_camera_make": "Apple", "exif_camera_model": "iPhone 15",
                                                  "taken_at": "2023-07-14T09:30:00"}
    assert read_exif(GOOD["DSC_0001.dng"]) == {"exif_camera_make": "TestCam", "exif_camera_model": "DNG-1"}


def test_a_raw_without_preview_is_demosaiced_at_half_size():
    body = embeddable(record("DSC_0001.dng"), GOOD["DSC_0001.dng"], max_pixels=LIMITS["max_pixels"])
    assert Image.open(io.BytesIO(body)).format == "JPEG"
    assert decode_image(body, **LIMITS).size == (64, 48)  # the 128x96 sensor, each 2x2 cell one pixel
    # A query image or upload that is a RAW file decodes the same way in the embedder.
    assert decode_image(GOOD["DSC_0001.dng"], **LIMITS).size == (64, 48)


def test_a_raw_with_an_embedded_preview_uses_the_preview():
    body = embeddable(record("DSC_0002.dng"), GOOD["DSC_0002.dng"], max_pixels=LIMITS["max_pixels"])
    assert decode_image(body, **LIMITS).size == (256, 192)  # the preview, not the 64x48 half-size demosaic


@pytest.mark.parametrize("name", sorted(bad_photos()))
def test_each_bad_file_fails_with_its_code_and_a_sentence(name):
    data, code = bad_photos()[name]
    with pytest.raises(ImageRejected) as refused:
        decode_image(embeddable(record(name), data, max_pixels=LIMITS["max_pixels"]), **LIMITS)
    assert refused.value.code == code
    assert refused.value.message.endswith(".") and len(refused.value.message) > 20


def test_a_file_whose_extension_lies_says_so():
    with pytest.raises(ImageRejected) as refused:
        embeddable(record("liar.heic"), b"hello, I am a text file\n" * 3, max_pixels=1000)
    assert refused.value.message == "is named .heic but its content is text; it was not ingested."


XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dawn</rdf:li></rdf:Alt></dc:title>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Fishing boats leaving</rdf:li></rdf:Alt></dc:description>
<dc:subject><rdf:Bag><rdf:li>boats</rdf:li><rdf:li>sea</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>"""


def test_sidecars_are_read_and_hostile_xml_is_ignored(tmp_path):
    good = tmp_path / "a.xmp"
    good.write_text(XMP)
    assert read_sidecar(good) == {"title": "Harbour at dawn", "description": "Fishing boats leaving",
                                  "keywords": ["boats", "sea"]}
    bomb = tmp_path / "b.xmp"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>')
    assert read_sidecar(bomb) == {}
    (tmp_path / "c.xmp").write_text("not xml at all")
    assert read_sidecar(tmp_path / "c.xmp") == {}


def test_a_folder_scan_accounts_for_every_file(tmp_path: Path):
    for name in ("IMG_1001.HEIC", "DSC_0001.dng", "phone_00.jpg"):
        (tmp_path / name).write_bytes(GOOD[name])
    (tmp_path / "DSC_0001.xmp").write_text(XMP)
    (tmp_path / "notes.txt").write_text("a shopping list")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    found = scan(tmp_path, {}, upload=False, limit=None)
    names = {Path(r.file.path).name: r for r in found.records}
    assert set(names) == {"IMG_1001.HEIC", "DSC_0001.dng", "phone_00.jpg", "clip.mp4"}
    assert names["DSC_0001.dng"].photo_description == "Harbour at dawn. Fishing boats leaving"
    assert names["DSC_0001.dng"].photo_keywords == "boats, sea"
    assert names["phone_00.jpg"].photo_description == "phone 00"
    assert dict(found.others) == {".txt": 1, ".xmp": 1} and found.sidecars == 1
    job = {"succeeded": 3, "skipped": 0, "failed": 1}
    assert accounting(found, job) == ("Every file accounted for: 6 files met: 3 ingested, 0 copies or already "
                                      "stored, 1 failed, 0 unchanged, 0 unreadable, 2 not a photo or video "
                                      "(.txt 1, .xmp 1).")


def test_a_video_becomes_a_few_frames_and_one_row():
    from services.worker.media import VideoLimits, combine, prepare

    item = prepare(record("clip.webm"), good_videos()["clip.webm"], max_pixels=10**8, video=VideoLimits(max_frames=3))
    assert item.record.kind == "video" and item.record.duration_s == 6.0
    assert item.times == [0.0, 2.0, 3.0] and len(item.bodies) == 3  # every 2 s, and the cut at 3 s
    vectors = [np.array([1.0, 0.0]), np.array([0.8, 0.6]), np.array([0.0, 1.0])]
    stored, vector, shown = combine(item, vectors)
    assert stored.frame_s == 2.0 and shown == item.bodies[1]  # the frame nearest the mean stands for it
    assert np.isclose(np.linalg.norm(vector), 1.0)


@pytest.mark.parametrize("name", ["long.mp4", "broken.mov", "liar.mp4"])
def test_each_bad_video_fails_with_its_code(name, tmp_path):
    from services.worker.local import LocalVideo
    from services.worker.media import VideoLimits, prepare

    data, code = bad_videos()[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageRejected) as refused:
        prepare(record(name), LocalVideo(tmp_path / name), max_pixels=10**8, video=VideoLimits(max_seconds=20))
    assert refused.value.code == code and refused.value.message.endswith(".")
