"""Your own photos: library roots, content ids, and the addresses of files the workers read.

A folder is ingested without any HTTP server: when its path lies under one of the library roots
(`LIBRARY_ROOTS`, shared by the gateway and the workers), each photo travels as a `file://` URL and the
workers read the file directly; otherwise the ingest command uploads the bytes to the gateway, which
keeps them in Redis under `upload:<sha256>` until a worker has read them (`upload://<sha256>` URLs).

A local photo's id comes from its bytes (`content_id`), so one picture under two names is one photo and a
renamed or moved file is not a new one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

CONTENT_PREFIX = "img-"
UPLOAD_SCHEME = "upload://"
FILE_SCHEME = "file://"
# Thumbnails: the long side in pixels, and the JPEG quality (about 15 KB each at 320 px).
THUMBNAIL_SIZE = 320
THUMBNAIL_QUALITY = 80


def content_id(data: bytes) -> str:
    """A photo's id from its bytes: the first 24 hex digits of their sha256 (96 bits)."""
    return CONTENT_PREFIX + hashlib.sha256(data).hexdigest()[:24]


def file_content_id(handle) -> str:
    """`content_id` of an open binary file's bytes, read a block at a time (a video is never held whole)."""
    return CONTENT_PREFIX + hashlib.file_digest(handle, "sha256").hexdigest()[:24]


def parse_roots(roots: list[str]) -> list[Path]:
    """The library roots as absolute, symlink-resolved paths (`~` expanded); missing ones are kept too,
    since a mount may appear later."""
    return [Path(os.path.realpath(Path(root).expanduser())) for root in roots if root.strip()]


def root_of(path: str | Path, roots: list[Path]) -> Path | None:
    """The root that holds `path` once every symlink is resolved, or None: a symlink that leads out of the
    library is outside it."""
    return _under(Path(os.path.realpath(Path(path).expanduser())), roots)


def _under(path: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


def listed_under(path: str | Path, roots: list[Path]) -> Path | None:
    """The root under which `path` is listed: its folder resolved, its own name not. A file that is a
    symlink out of the library is listed inside it; the worker that reads it refuses it alone."""
    path = Path(path).expanduser()
    return _under(Path(os.path.realpath(path.parent)) / path.name, roots)


def outside_sentence(path: str | Path, roots: list[Path]) -> str:
    if not roots:
        return (f"{path} cannot be read by the workers: no library roots are set (LIBRARY_ROOTS is empty). "
                "Add the folder (or one above it) to LIBRARY_ROOTS for the gateway and the workers, or let "
                "the ingest command upload the files.")
    return (f"{path} is not under the library roots ({', '.join(str(root) for root in roots)}), so the "
            "workers may not read it. Add it to LIBRARY_ROOTS for the gateway and the workers, or let the "
            "ingest command upload the files.")


def file_url(path: str | Path) -> str:
    return FILE_SCHEME + quote(str(Path(path).absolute()))


def path_of(url: str) -> str | None:
    """The local path of a `file://` URL, else None."""
    if not url.startswith(FILE_SCHEME):
        return None
    return unquote(urlsplit(url).path) or None


def upload_url(digest: str) -> str:
    return UPLOAD_SCHEME + digest


def upload_digest(url: str) -> str | None:
    if not url.startswith(UPLOAD_SCHEME):
        return None
    digest = url[len(UPLOAD_SCHEME):]
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def is_local(url: str) -> bool:
    return url.startswith((FILE_SCHEME, UPLOAD_SCHEME))
