"""Bad files in a folder: each fails alone with its reason, and the good photo beside it is stored.

Runs `pipeline.ingest_batch` on real files in a temporary library root, with the fake embedder and store.
"""
from __future__ import annotations

import builtins
import io
import os

import pytest
from PIL import Image

from services.common.fetch import FetchPolicy
from services.common.library import content_id, file_url
from services.common.schemas import LocalFile, PhotoRecord
from services.worker import pipeline
from tests.fakes import FakeEmbedder, FakeStore


def jpeg(color: tuple[int, int, int], size=(640, 480), orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", size, color).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def record_for(path, data: bytes | None = None) -> PhotoRecord:
    data = path.read_bytes() if data is None else data
    stat = os.stat(path) if os.path.exists(path) else None
    return PhotoRecord(photo_id=content_id(data), photo_image_url=file_url(path),
                       file=LocalFile(path=str(path), size=stat.st_size if stat else 0,
                                      mtime=stat.st_mtime if stat else 0.0))


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    good = root / "good.jpg"
    good.write_bytes(jpeg((200, 10, 10)))
    return root, good


def ingest(root, records):
    store = FakeStore()
    store.ensure_table(store.dim, store.model)
    outcome = pipeline.ingest_batch(records, FakeEmbedder(), store, FetchPolicy(max_bytes=1 << 20),
                                    roots=[root.resolve()])
    return outcome, store


def failed_alone(root, good, bad_record) -> dict:
    outcome, store = ingest(root, [record_for(good), bad_record])
    assert outcome.succeeded == 1 and set(store.photos) == {content_id(good.read_bytes())}
    assert [f.photo_id for f in outcome.failures] == [bad_record.photo_id]
    failure = outcome.failures[0]
    assert failure.reason and failure.url == bad_record.file.path
    return failure.model_dump()


def test_a_good_file_is_stored_with_a_thumbnail_and_its_path(library):
    root, good = library
    sideways = root / "sideways.jpg"
    sideways.write_bytes(jpeg((0, 0, 200), size=(640, 480), orientation=6))
    outcome, store = ingest(root, [record_for(good), record_for(sideways)])
    assert outcome.succeeded == 2 and not outcome.failures
    thumb = Image.open(io.BytesIO(store.thumbnails[content_id(sideways.read_bytes())]))
    # EXIF orientation 6 turns a 640x480 picture upright: 240x320 at most 320 px on the long side.
    assert thumb.format == "JPEG" and thumb.size == (240, 320)
    assert store.files[str(good)][0] == content_id(good.read_bytes())


def test_an_unreadable_file(library, monkeypatch):
    root, good = library
    locked = root / "locked.jpg"
    locked.write_bytes(jpeg((1, 2, 3)))
    record = record_for(locked)
    locked.chmod(0)
    real_open = builtins.open

    def refusing_open(path, *args, **kwargs):  # root reads a mode-000 file anyway; a user would not
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    failure = failed_alone(root, good, record)
    assert failure["code"] == "unreadable" and "Permission denied" in failure["reason"]


def test_a_non_image_named_jpg(library):
    root, good = library
    fake = root / "notes.jpg"
    fake.write_text("these are my notes, not a picture\n" * 10)
    assert failed_alone(root, good, record_for(fake))["code"] == "not_an_image"


def test_an_empty_file(library):
    root, good = library
    empty = root / "empty.jpg"
    empty.write_bytes(b"")
    failure = failed_alone(root, good, record_for(empty))
    assert failure["code"] == "empty_file" and "0 bytes" in failure["reason"]


def test_a_symlink_loop(library):
    root, good = library
    loop = root / "loop.jpg"
    os.symlink(root / "loop2.jpg", loop)
    os.symlink(loop, root / "loop2.jpg")
    record = PhotoRecord(photo_id="img-" + "0" * 24, photo_image_url=file_url(loop), file=LocalFile(path=str(loop)))
    assert failed_alone(root, good, record)["code"] == "symlink_loop"


def test_a_symlink_that_leaves_the_library(library, tmp_path):
    root, good = library
    secret = tmp_path / "elsewhere.jpg"
    secret.write_bytes(jpeg((9, 9, 9)))
    link = root / "link.jpg"
    os.symlink(secret, link)
    failure = failed_alone(root, good, record_for(link))
    assert failure["code"] == "outside_library" and str(secret) in failure["reason"]


def test_a_file_that_changes_while_read(library):
    root, good = library
    moving = root / "moving.jpg"
    moving.write_bytes(jpeg((5, 5, 5)))
    record = record_for(moving)  # listed and hashed by the ingest command...
    moving.write_bytes(jpeg((250, 250, 250)))  # ...then rewritten before the worker reads it
    failure = failed_alone(root, good, record)
    assert failure["code"] == "changed_while_read"
