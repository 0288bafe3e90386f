"""Reading photos that are not on the web: files under the library roots, and uploads waiting in Redis.

Each read checks what can go wrong with a file on someone's disk, and each problem fails that photo
alone with a sentence: a path outside the library roots (also through a symlink), a symlink loop, a
file that cannot be read, an empty file, one over the size limit, and one that changed while it was
read (its bytes must hash to the content id the ingest command computed, and its size and mtime must
not move during the read). Also makes the thumbnail kept for every photo.
"""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

from PIL import Image

from services.common.library import (
    THUMBNAIL_QUALITY,
    THUMBNAIL_SIZE,
    content_id,
    file_content_id,
    path_of,
    root_of,
    upload_digest,
)
from services.common.uploads import UploadSpool
from services.media.decode import decode_image


class LocalReadError(Exception):
    """One local photo could not be read; `code` is stable, `str()` a sentence."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _real_path(url: str, roots: list[Path]) -> tuple[str, str]:
    """(the path named, the real file it leads to), checked to lie under a library root."""
    path = path_of(url)
    if not path:
        raise LocalReadError("invalid_path", f"{url!r} names no file.")
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LocalReadError("symlink_loop", f"{path} is a symlink loop; it leads to no file.") from None
        raise LocalReadError("file_missing", f"{path} could not be found ({exc.strerror}).") from None
    if root_of(real, roots) is None:
        raise LocalReadError("outside_library", f"{path} leads to {real}, which is outside the library roots "
                             "(LIBRARY_ROOTS); it was not read.")
    return path, real


def _check_size(path: str, size: int, max_bytes: int, setting: str) -> None:
    if size == 0:
        raise LocalReadError("empty_file", f"{path} is empty (0 bytes).")
    if size > max_bytes:
        raise LocalReadError("file_too_large", f"{path} is {size:,} bytes; the limit is {max_bytes:,} ({setting}).")


def read_local_file(url: str, photo_id: str, roots: list[Path], max_bytes: int) -> bytes:
    """The bytes of a `file://` photo, checked as the module docstring says."""
    path, real = _real_path(url, roots)
    try:
        with open(real, "rb") as handle:
            before = os.fstat(handle.fileno())
            _check_size(path, before.st_size, max_bytes, "WORKER_MAX_IMAGE_BYTES")
            data = handle.read(max_bytes + 1)
        after = os.stat(real)
    except LocalReadError:
        raise
    except OSError as exc:
        raise LocalReadError("unreadable", f"{path} could not be read ({exc.strerror}).") from None
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(data) != before.st_size:
        raise LocalReadError("changed_while_read", f"{path} changed while it was read; run the ingest again "
                             "once it is written.")
    # The ingest command listed the file and named the photo after its bytes (or, when it could not
    # read it, after its path: then it is refused here too).
    if content_id(data) != photo_id:
        raise LocalReadError("changed_while_read", f"{path} changed after it was listed (its content is not "
                             "what the ingest command read); run the ingest again.")
    return data


def check_local_video(url: str, photo_id: str, roots: list[Path], max_bytes: int) -> LocalVideo:
    """A `file://` video, checked as a photo is but hashed a block at a time: its path, for the decoder
    to stream from, never its bytes."""
    path, real = _real_path(url, roots)
    try:
        with open(real, "rb") as handle:
            before = os.fstat(handle.fileno())
            _check_size(path, before.st_size, max_bytes, "WORKER_MAX_VIDEO_BYTES")
            digest = file_content_id(handle)
    except LocalReadError:
        raise
    except OSError as exc:
        raise LocalReadError("unreadable", f"{path} could not be read ({exc.strerror}).") from None
    if digest != photo_id:
        raise LocalReadError("changed_while_read", f"{path} changed after it was listed (its content is not "
                             "what the ingest command read); run the ingest again.")
    return LocalVideo(real)


class LocalVideo(str):
    """The real path of a checked local video (a str, so it goes where bytes would and says what it is)."""


def read_upload(url: str, photo_id: str, spool: UploadSpool | None) -> bytes:
    digest = upload_digest(url)
    if digest is None or spool is None:
        raise LocalReadError("invalid_path", f"{url!r} is not an upload this worker can read.")
    data = spool.get(digest)
    if data is None:
        raise LocalReadError("upload_expired", "The uploaded file is no longer waiting in Redis (it expired "
                             "or was already read); run the ingest again.")
    if content_id(data) != photo_id:
        raise LocalReadError("changed_while_read", "The uploaded bytes do not match the photo's id.")
    return data


def make_thumbnail(data: bytes, *, max_bytes: int, max_pixels: int) -> bytes:
    """A JPEG about THUMBNAIL_SIZE px on its long side, EXIF orientation applied (decode_image does that);
    raises ImageRejected / ImageTooLarge for what is not a readable picture."""
    image = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, draft_size=THUMBNAIL_SIZE)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()
