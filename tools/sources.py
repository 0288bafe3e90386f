"""Where photos to ingest come from: each source yields `PhotoRecord`s, streaming.

Accepted sources (`open_source` picks by looking at the path):
- an Unsplash Lite `photos.tsv*` file (tab-separated, with a header; `.gz` also read);
- the Unsplash Lite dataset `.zip` (its `photos.tsv*` member is streamed, nothing is extracted);
  with either, the dataset's `keywords.tsv*` (in the zip, or beside the TSV) fills `photo_keywords`
  (tools/unsplash_keywords.py);
- a text file of image URLs, one per line (`#` comments and blank lines ignored); the photo id is a
  stable hash of the URL, so ingesting the list twice adds nothing;
- a `.csv` (header first) or `.jsonl` / `.ndjson` (one JSON object a line) list: `photo_image_url` is
  required, every other column is optional and named as in Unsplash Lite (`photo_id`,
  `photo_description`, `photographer_username`, `photo_location_country`, ...); unknown columns are
  ignored, and a row without `photo_id` gets the URL's stable hash;
- a folder of images served over HTTP at `base_url` (the ingest CLI's `--base-url` / `--serve`); a
  folder without one is read by tools/folder_ingest.py instead (paths or uploads, no server). Either
  way a photo's id comes from its bytes (services/common/library.py: `content_id`).

Bad rows are reported through `on_bad_row(where, reason)` and skipped; nothing reads more than it
yields beyond one row.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from services.common.schemas import PhotoRecord
from services.media.formats import MEDIA_SUFFIXES
from tools.unsplash_keywords import WINDOW, member_text, with_keywords

log = logging.getLogger(__name__)

# A small JPEG rendition is downloaded rather than the original (often several MB).
SMALL_IMAGE_QUERY = "q=75&fm=jpg&w=200&fit=max"
# Every photo and video a phone or camera makes (services/media/formats.py); other files are counted, not sent.
IMAGE_SUFFIXES = MEDIA_SUFFIXES
_TEXT_FIELDS = ("photo_url", "photo_description", "ai_description", "photographer_username",
                "photographer_first_name", "photographer_last_name", "photo_location_name",
                "photo_location_country", "photo_location_city", "photo_submitted_at", "exif_camera_make",
                "exif_camera_model")

BadRowHandler = Callable[[str, str], None]


class SourceError(Exception):
    """The source as a whole cannot be read (missing file, no photos.tsv in the zip...)."""


def _log_bad_row(where: str, reason: str) -> None:
    log.warning("skipped %s: %s", where, reason)


def small_image_url(url: str) -> str:
    """The small rendition: add the resize query unless the URL already has a query."""
    return url if urlsplit(url).query else f"{url}?{SMALL_IMAGE_QUERY}"


def stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:24]}"


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --- Unsplash Lite TSV --------------------------------------------------------------------------


def _int(value: str) -> int:
    return int(float(value)) if value.strip() else 0


def _float(value: str) -> float:
    return float(value) if value.strip() else 0.0


def _position(row: Mapping[str, Any]) -> dict[str, float]:
    """Unsplash's photo_location_latitude / _longitude, when the row has both."""
    latitude = (row.get("photo_location_latitude") or "").strip()
    longitude = (row.get("photo_location_longitude") or "").strip()
    if not latitude or not longitude:
        return {}
    return {"photo_location_latitude": float(latitude), "photo_location_longitude": float(longitude)}


def read_tsv(stream: Iterable[str], *, name: str = "photos.tsv", small_images: bool = True,
             on_bad_row: BadRowHandler = _log_bad_row) -> Iterator[PhotoRecord]:
    """Records from the text of an Unsplash Lite `photos.tsv*` (header first)."""
    # Descriptions can be long; the csv module's default cap (128 KiB) is not a property of the data.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(stream, delimiter="\t")
    header = reader.fieldnames or []
    missing = {"photo_id", "photo_image_url"} - set(header)
    if missing:
        raise SourceError(f"{name} is not an Unsplash photos.tsv: its header lacks {', '.join(sorted(missing))}.")
    for row in reader:
        where = f"{name} line {reader.line_num}"
        if None in row:  # more cells than header names: a broken line
            on_bad_row(where, "the row has more columns than the header")
            continue
        photo_id = (row.get("photo_id") or "").strip()
        url = (row.get("photo_image_url") or "").strip()
        if not photo_id:
            on_bad_row(where, "the row has no photo_id")
            continue
        if not _is_http_url(url):
            on_bad_row(where, f"photo {photo_id} has no http(s) photo_image_url ({url!r})")
            continue
        try:
            fields = {key: (row.get(key) or "").strip() for key in _TEXT_FIELDS}
            record = PhotoRecord(
                photo_id=photo_id,
                photo_image_url=small_image_url(url) if small_images else url,
                photo_width=_int(row.get("photo_width") or ""),
                photo_height=_int(row.get("photo_height") or ""),
                photo_aspect_ratio=_float(row.get("photo_aspect_ratio") or ""),
                **_position(row),
                **fields,
            )
        except ValueError as exc:
            on_bad_row(where, f"photo {photo_id} has an invalid value: {_problem(exc)}")
            continue
        yield record


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_tsv_file(path: Path, *, keyword_window: int = WINDOW, **options) -> Iterator[PhotoRecord]:
    keyword_files = sorted(path.parent.glob("keywords.tsv*")) if path.name.startswith("photos.tsv") else []
    with _open_text(path) as stream:
        yield from with_keywords(read_tsv(stream, name=path.name, **options),
                                 [lambda found=found: _open_text(found) for found in keyword_files], keyword_window)


def read_zip(path: Path, *, keyword_window: int = WINDOW, **options) -> Iterator[PhotoRecord]:
    """Records from the dataset zip's `photos.tsv*` members, in name order, streamed; keywords from its `keywords.tsv*`."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{path} is not a readable zip file: {exc}.") from None
    with archive:
        photos, keywords = ([name for name in sorted(info.filename for info in archive.infolist() if not info.is_dir())
                             if PurePosixPath(name).name.startswith(prefix) and not name.startswith("__MACOSX/")]
                            for prefix in ("photos.tsv", "keywords.tsv"))
        if not photos:
            raise SourceError(f"{path} holds no photos.tsv file; is it the Unsplash Lite dataset?")

        def records() -> Iterator[PhotoRecord]:
            for member in photos:
                with member_text(archive, member) as stream:
                    yield from read_tsv(stream, name=f"{path.name}:{member}", **options)
        yield from with_keywords(records(), [lambda m=m: member_text(archive, m) for m in keywords], keyword_window)


# --- URL list and folder ------------------------------------------------------------------------


# --- CSV and JSON Lines lists -------------------------------------------------------------------

# PhotoRecord's fields and their Python types: a list's columns are matched against these names.
_RECORD_FIELDS = {name: field.annotation for name, field in PhotoRecord.model_fields.items()}


def record_from_row(row: Mapping[str, Any]) -> PhotoRecord:
    """A record from one list row: the columns named like PhotoRecord's fields, empty cells left at their
    defaults, whole numbers read from "12" or "12.0"; a missing photo_id is the URL's stable hash.
    Raises ValueError with what is wrong."""
    url = str(row.get("photo_image_url") or "").strip()
    if not _is_http_url(url):
        raise ValueError(f"the row has no http(s) photo_image_url ({url[:200]!r})")
    if len(url) > 4096:
        raise ValueError("the URL is longer than 4096 characters")
    values: dict[str, Any] = {}
    for name, kind in _RECORD_FIELDS.items():
        value = row.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        if kind is int and isinstance(value, str):
            try:
                value = int(float(value))
            except ValueError:
                raise ValueError(f"{name}: {value[:50]!r} is not a number") from None
        values[name] = value if kind is not str or isinstance(value, str) else str(value)
    values["photo_image_url"] = url
    values.setdefault("photo_id", stable_id("url", url))
    values.setdefault("photo_url", url)
    try:
        return PhotoRecord(**values)
    except ValueError as exc:
        raise ValueError(_problem(exc)) from None


def _problem(exc: ValueError) -> str:
    """A pydantic ValidationError as "field: problem" (its first error); any other ValueError as it says."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if errors:
        return f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']}"
    return str(exc).splitlines()[0]


def _rows_to_records(rows: Iterable[tuple[str, Any]], on_bad_row: BadRowHandler) -> Iterator[PhotoRecord]:
    for where, row in rows:
        if not isinstance(row, Mapping):
            on_bad_row(where, "the line is not a JSON object")
            continue
        try:
            yield record_from_row(row)
        except (ValueError, TypeError) as exc:
            on_bad_row(where, str(exc))


def read_csv_list(path: Path, *, on_bad_row: BadRowHandler = _log_bad_row, **_) -> Iterator[PhotoRecord]:
    """Records from a CSV list with a header row naming its columns (photo_image_url required)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open_text(path) as stream:
        reader = csv.DictReader(stream)
        if "photo_image_url" not in (reader.fieldnames or []):
            raise SourceError(f"{path.name} has no photo_image_url column in its header; name the image URL "
                              "column photo_image_url (other columns as in Unsplash Lite: photo_id, "
                              "photo_description, ...).")

        def rows() -> Iterator[tuple[str, Any]]:
            for row in reader:
                where = f"{path.name} line {reader.line_num}"
                if None in row:
                    on_bad_row(where, "the row has more columns than the header")
                    continue
                yield where, row

        yield from _rows_to_records(rows(), on_bad_row)


def read_jsonl_list(path: Path, *, on_bad_row: BadRowHandler = _log_bad_row, **_) -> Iterator[PhotoRecord]:
    """Records from JSON Lines: one object a line, keys as in Unsplash Lite (photo_image_url required)."""
    with _open_text(path) as stream:
        def rows() -> Iterator[tuple[str, Any]]:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    yield where, json.loads(line)
                except ValueError as exc:
                    on_bad_row(where, f"the line is not valid JSON ({exc})")

        yield from _rows_to_records(rows(), on_bad_row)


def read_url_list(path: Path, *, on_bad_row: BadRowHandler = _log_bad_row, **_) -> Iterator[PhotoRecord]:
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            url = line.strip()
            if not url or url.startswith("#"):
                continue
            if not _is_http_url(url):
                on_bad_row(f"{path.name} line {number}", f"{url[:200]!r} is not an http(s) URL")
                continue
            if len(url) > 4096:
                on_bad_row(f"{path.name} line {number}", "the URL is longer than 4096 characters")
                continue
            yield PhotoRecord(photo_id=stable_id("url", url), photo_image_url=url, photo_url=url)


def iter_image_files(folder: Path, on_other: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Image files under `folder`, recursively, hidden entries and links to folders skipped (as os.walk
    does), in the order of their whole paths as text: the order in which the store lists the files it
    holds, so that tools/folder_ingest.py can match the two page by page. That order puts a folder's
    files between its siblings as their paths sort: `a.jpg`, then `a/x.jpg`, then `a0.jpg` ('.' < '/' < '0').
    Holds one sorted listing per folder level, as os.walk does. Every other file (not a photo or video)
    is passed to `on_other`, so that a summary can account for it."""
    pending = [iter(_sorted_entries(str(folder), on_other))]
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
        elif entry[1]:
            pending.append(iter(_sorted_entries(entry[0], on_other)))
        else:
            yield Path(entry[0])


def _sorted_entries(directory: str, on_other: Callable[[Path], None] | None = None) -> list[tuple[str, bool]]:
    """(path, is a folder) for the image files and folders in `directory`, in whole-path order: a folder
    sorts by its name and a '/', as every path under it does. An unreadable folder has none."""
    keyed = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not entry.is_symlink():
                        keyed.append((entry.name + "/", entry.path, True))
                elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    keyed.append((entry.name, entry.path, False))
                elif on_other is not None:
                    on_other(Path(entry.path))
    except OSError:
        return []
    return [(path, is_dir) for _, path, is_dir in sorted(keyed)]


def read_folder(folder: Path, *, base_url: str | None, **_) -> Iterator[PhotoRecord]:
    """Records for the images in `folder`, as served under `base_url` (same relative paths), each named
    by its bytes."""
    from services.common.library import content_id

    if not base_url:
        raise SourceError(f"{folder} is a folder: run the ingest command on it without --base-url (the workers "
                          f"read it, or the command uploads it).")
    base = base_url.rstrip("/")
    for path in iter_image_files(folder):
        relative = path.relative_to(folder).as_posix()
        try:
            photo_id = content_id(path.read_bytes())
        except OSError as exc:
            log.warning("skipped %s: %s", path, exc)
            continue
        yield PhotoRecord(photo_id=photo_id, photo_image_url=f"{base}/{quote(relative)}",
                          photo_description=path.stem.replace("_", " ").replace("-", " "))


# --- dispatch -----------------------------------------------------------------------------------


def source_kind(path: Path) -> str:
    """'folder', 'zip', 'tsv', 'csv', 'jsonl' or 'urls', from the path (its extension) and, for other
    plain files, the first line."""
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise SourceError(f"{path} does not exist.")
    if zipfile.is_zipfile(path):
        return "zip"
    if path.name.startswith("photos.tsv") or ".tsv" in path.suffixes:
        return "tsv"
    if ".csv" in path.suffixes:
        return "csv"
    if ".jsonl" in path.suffixes or ".ndjson" in path.suffixes:
        return "jsonl"
    with _open_text(path) as stream:
        first = stream.readline()
    return "tsv" if "\t" in first and "photo_id" in first else "urls"


def open_source(source: str | Path, *, limit: int | None = None, small_images: bool = True,
                base_url: str | None = None, on_bad_row: BadRowHandler = _log_bad_row) -> Iterator[PhotoRecord]:
    """Records from any accepted source, at most `limit` of them."""
    path = Path(source).expanduser()
    kind = source_kind(path)
    readers = {"folder": read_folder, "zip": read_zip, "tsv": read_tsv_file, "urls": read_url_list,
               "csv": read_csv_list, "jsonl": read_jsonl_list}
    if kind == "folder":
        records = read_folder(path, base_url=base_url)
    else:
        options = {"on_bad_row": on_bad_row}
        if kind in ("zip", "tsv"):
            options["small_images"] = small_images
            # Keywords are read a window of photos at a time: no wider than the photos wanted.
            options["keyword_window"] = min(WINDOW, limit) if limit and limit > 0 else WINDOW
        records = readers[kind](path, **options)
    return _take(records, limit)


def _take(records: Iterator[PhotoRecord], limit: int | None) -> Iterator[PhotoRecord]:
    if limit is not None and limit <= 0:
        return
    for count, record in enumerate(records, start=1):
        yield record
        if limit is not None and count >= limit:
            return
