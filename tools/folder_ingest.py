"""`make ingest SOURCE=<folder>`: a folder of your own photos, with no server of yours and no flag.

1. Ask the gateway (GET /v1/files) which files under the folder are already stored, with their size
   and mtime, and whether the workers may read the folder (it lies under LIBRARY_ROOTS). The listing
   comes a page at a time in path order, and the folder is walked in the same order, so the two are
   matched as they stream (`StoredFiles`): a re-run of a million files holds one page, not a million.
2. Walk the folder a chunk at a time (steps 2 and 3 run per chunk, so memory stays flat for any
   folder size). A file whose size and mtime are unchanged is neither read nor sent again; every
   other file is read once here and named by its bytes (`content_id`): copies of one picture are one
   photo, and the summary lists them.
3. Send the new files: as `file://` paths the workers read directly when they may, else uploaded to
   the gateway (POST /v1/ingest/upload, a few at a time, with at most `window` photos waiting in the
   workers' queue, so the bytes held in Redis stay bounded).
4. With `--prune`, forget the files that are gone (POST /v1/files/forget); a photo left with no file
   is deleted. This is its own walk, before anything is sent: a photo whose file moved must not be
   deleted for its old path after its new one was sent.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.library import content_id, file_url
from services.common.schemas import LocalFile, PhotoRecord
from services.media import xmp
from tools.sources import SourceError, iter_image_files

UPLOAD_GROUP = 32
FORGET_CHUNK = 5000
FILES_PAGE = 5000  # file records per GET /v1/files page: all the command holds of the listing at once


EXAMPLES = 10  # copies and unreadable files kept as examples for the summary; the rest are counted


@dataclass
class FolderScan:
    """What the walk found: records to send (with the local file each came from), and what it left.

    A large folder is walked a chunk at a time (`walk`), so `records` holds only what `scan` collects;
    copies and unreadable files are kept as the first few examples plus a count."""

    records: list[PhotoRecord] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # image paths seen (none with `walk(keep_present=False)`)
    seen: int = 0  # image files seen, unchanged or not
    made: int = 0  # records made, over every chunk
    unchanged: int = 0
    copies: list[tuple[str, str]] = field(default_factory=list)  # (copy, first path with the same picture)
    copies_total: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), when uploading
    unreadable_total: int = 0
    # photo id -> the first path that holds it: what names a copy within the folder. One short entry a
    # new file: the one thing that grows with the folder, and it must, to find copies across chunks.
    # Stored files are not entered here (a re-run would hold one entry a stored file): a new file that
    # holds a stored picture is found by `stored_copies` instead.
    first_path: dict[str, str] = field(default_factory=dict)
    # Files that are no photo or video, by extension (".txt", ".xmp", "(none)"), and their paths when asked.
    others: Counter = field(default_factory=Counter)
    other_paths: list[str] | None = None
    sidecars: int = 0  # .xmp sidecars read into a photo's description

    def add_other(self, path: Path) -> None:
        self.others[path.suffix.lower() or "(none)"] += 1
        if self.other_paths is not None:
            self.other_paths.append(str(path))

    def add_copy(self, copy: str, first: str) -> None:
        self.copies_total += 1
        if len(self.copies) < EXAMPLES:
            self.copies.append((copy, first))


def stored_files(client, folder: str, page: int | None = None) -> tuple[dict, Iterator[dict]]:
    """What GET /v1/files says of `folder` (`readable`, `reason`), and every file recorded under it in
    path order, asked for a page at a time as the iterator reaches it."""
    size = page or FILES_PAGE
    answer = client.files(folder, limit=size)
    rows = answer.pop("files")
    return answer, _pages(client, folder, rows, answer.get("next"), size)


def _pages(client, folder: str, rows: list[dict], after: str | None, size: int) -> Iterator[dict]:
    while True:
        yield from rows
        if not after:  # the last page (or a gateway that does not page, which sent everything at once)
            return
        rows = []  # let the page go before the next one arrives
        answer = client.files(folder, after=after, limit=size)
        rows, after = answer["files"], answer.get("next")


class StoredFiles:
    """The recorded files under a folder, streamed in path order, matched against a walk of the folder in
    the same order (`iter_image_files`): `find(path)` answers the record of `path`, or None for a new
    file; the records it passes on the way, and those left at `finish()`, are of files that are gone
    (`on_gone`). Holds one record and the page it came in."""

    def __init__(self, rows: Iterable[dict], on_gone: Callable[[str], None] | None = None):
        self._rows = iter(rows)
        self._on_gone = on_gone
        self._last = self._asked = ""
        self._head = self._next()

    def _next(self) -> dict | None:
        row = next(self._rows, None)
        if row is not None:
            # Matching depends on both sides' order; a listing out of order would read as gone files.
            if row["path"] <= self._last:
                raise SourceError(f"The gateway listed the stored files out of path order ({row['path']!r} after "
                                  f"{self._last!r}); nothing was sent or forgotten.")
            self._last = row["path"]
        return row

    def find(self, path: str) -> dict | None:
        if path < self._asked:
            raise SourceError(f"The folder was walked out of path order ({path!r} after {self._asked!r}).")
        self._asked = path
        while self._head is not None and self._head["path"] < path:
            if self._on_gone:
                self._on_gone(self._head["path"])
            self._head = self._next()
        if self._head is not None and self._head["path"] == path:
            row, self._head = self._head, self._next()
            return row
        return None

    def finish(self) -> None:
        while self._head is not None:
            if self._on_gone:
                self._on_gone(self._head["path"])
            self._head = self._next()


def scan(folder: Path, known: dict[str, dict], *, upload: bool, limit: int | None) -> FolderScan:
    """The whole walk at once, every record kept (small folders, tests)."""
    result = FolderScan()
    for chunk in walk(folder, known, result, upload=upload, limit=limit, chunk_size=1000):
        result.records.extend(chunk)
    return result


def walk(folder: Path, known: Mapping[str, dict] | Iterable[dict], state: FolderScan, *, upload: bool,
         limit: int | None, chunk_size: int, keep_present: bool = True) -> Iterator[list[PhotoRecord]]:
    """Walk the folder and yield its new and changed files as records, `chunk_size` at a time, so that a
    caller that sends each chunk before asking for the next holds one chunk, whatever the folder's size.
    `known`: the stored files, streamed in path order (`stored_files`), or a dict of them by path.
    With `keep_present=False` no path seen is kept in `state.present`."""
    rows = sorted(known.values(), key=lambda row: row["path"]) if isinstance(known, Mapping) else known
    stored = StoredFiles(rows)
    chunk: list[PhotoRecord] = []
    for path in iter_image_files(folder, state.add_other):
        name = str(path)
        state.seen += 1
        if keep_present:
            state.present.add(name)
        previous = stored.find(name)
        try:
            stat = os.stat(path)
            if previous and previous["size"] == stat.st_size and previous["mtime"] == stat.st_mtime:
                state.unchanged += 1
                continue
            if limit is not None and state.made >= limit:
                continue
            photo_id = content_id(path.read_bytes())
        except OSError as exc:
            if upload:  # nothing to upload: said here, since the job never sees it
                state.unreadable_total += 1
                if len(state.unreadable) < EXAMPLES:
                    state.unreadable.append((name, exc.strerror or str(exc)))
                continue
            # Sent anyway, named after its path: the worker that tries to read it records why it cannot.
            stat, photo_id = None, content_id(b"unreadable:" + name.encode())
        first = state.first_path.setdefault(photo_id, name)
        if first != name:
            state.add_copy(name, first)
        local = LocalFile(path=name, size=stat.st_size if stat else 0, mtime=stat.st_mtime if stat else 0.0)
        chunk.append(PhotoRecord(photo_id=photo_id, photo_image_url=file_url(path), file=local,
                                 **described(path, state)))
        state.made += 1
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def described(path: Path, state: FolderScan) -> dict:
    """A photo's description (and keywords): from its sidecar .xmp when it has one, else its file name."""
    fields = {"photo_description": path.stem.replace("_", " ").replace("-", " ")}
    sidecar = xmp.sidecar_of(path)
    found = xmp.read_sidecar(sidecar) if sidecar else {}
    if found:
        state.sidecars += 1
        fields["photo_description"] = xmp.describe(fields["photo_description"], found)[:4096]
        fields["photo_keywords"] = ", ".join(found.get("keywords", []))[:4096]
    return fields


def walk_report(found: FolderScan, folder: Path) -> None:
    """What the walk left out, said before the job runs: unreadable files, unchanged ones, and every file
    that is no photo or video, counted by extension (named one a line with --verbose)."""
    for path, reason in found.unreadable:
        say(f"skipped {path}: it could not be read ({reason}).")
    if found.unreadable_total > len(found.unreadable):
        say(f"skipped {found.unreadable_total} unreadable files in all.")
    if found.unchanged:
        print(f"{found.unchanged} files are unchanged since the last ingest and were not read again.")
    if found.others:
        counts = ", ".join(f"{suffix} {count}" for suffix, count in sorted(found.others.items()))
        sidecars = f" ({found.sidecars} .xmp sidecars were read into their photos' descriptions)" if found.sidecars else ""
        print(f"{sum(found.others.values())} files are not a photo or video and were not sent: {counts}{sidecars}.")
    for path in found.other_paths or []:
        print(f"  not a photo or video: {_short(path, folder)}")


def accounting(found: FolderScan, job: dict | None) -> str:
    """One line that accounts for every file the walk met: what the job made of those it was sent, and
    what never needed sending."""
    others = sum(found.others.values())
    parts = []
    if job is not None:
        parts += [f"{job['succeeded']} ingested", f"{job['skipped']} copies or already stored",
                  f"{job['failed']} failed"]
    parts += [f"{found.unchanged} unchanged", f"{found.unreadable_total} unreadable", f"{others} not a photo or video"]
    if found.others:
        parts[-1] += " (" + ", ".join(f"{suffix} {count}" for suffix, count in sorted(found.others.items())) + ")"
    return f"Every file accounted for: {found.seen + others} files met: " + ", ".join(parts) + "."


def stored_copies(client, records: list[PhotoRecord], found: FolderScan) -> None:
    """Count in `found` the new files whose picture is already stored under another path. A file that is
    itself a copy within the folder is counted once, there, not again when its first is stored."""
    firsts = [record for record in records if found.first_path.get(record.photo_id) == record.file.path]
    ids = list(dict.fromkeys(record.photo_id for record in firsts))
    for start in range(0, len(ids), FORGET_CHUNK):
        stored = client.files_of(ids[start:start + FORGET_CHUNK])
        for record in firsts:
            paths = [path for path in stored.get(record.photo_id, []) if path != record.file.path]
            if paths:
                found.add_copy(record.file.path, paths[0])


def _groups(records: list[PhotoRecord], size: int) -> Iterator[list[PhotoRecord]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def upload_all(client, records: list[PhotoRecord], *, batch_size: int, window: int,
               poll_interval: float, job_id: str | None = None, sent: int = 0) -> str | None:
    """Upload the files a group at a time into one job (`job_id`, else a new one, which already holds
    `sent` photos); returns its id."""
    for group in _groups(records, UPLOAD_GROUP):
        while job_id and window and sent - _processed(client.job(job_id)) > window:
            time.sleep(poll_interval)
        handles = []
        try:
            parts = []
            for record in group:
                handle = open(record.file.path, "rb")  # noqa: SIM115 - closed below, after the request
                handles.append(handle)
                parts.append((Path(record.file.path).name, handle, record.file.model_dump()))
            answer = client.upload(parts, job_id=job_id, batch_size=batch_size)
        finally:
            for handle in handles:
                handle.close()
        job_id = answer["job_id"]
        sent += len(group)
    return job_id


def _processed(job: dict) -> int:
    return int(job["succeeded"]) + int(job["skipped"]) + int(job["failed"])


def prune(client, folder: Path, known: Iterable[dict]) -> tuple[int, int]:
    """Forget the recorded files under `folder` that are gone, FORGET_CHUNK at a time as a listing of the
    folder (no file read) passes them; `known` as `walk` takes it. Returns (files forgotten, photos deleted)."""
    gone: list[str] = []
    forgotten = deleted = 0

    def forget() -> None:
        nonlocal forgotten, deleted
        if gone:
            # Only paths before the listing's cursor are forgotten: the pages still to come are unchanged.
            deleted += int(client.forget_files(gone)["deleted"])
            forgotten += len(gone)
            gone.clear()

    def on_gone(path: str) -> None:
        gone.append(path)
        if len(gone) >= FORGET_CHUNK:
            forget()

    stored = StoredFiles(known, on_gone)
    for path in iter_image_files(folder):
        stored.find(str(path))
    stored.finish()
    forget()
    return forgotten, deleted


def copies_summary(copies: list[tuple[str, str]], folder: Path, show: int = 5, total: int | None = None) -> str:
    """`total` copies in all (default: as many as listed), of which `copies` are examples."""
    total = len(copies) if total is None else total
    if not total:
        return ""
    lines = [f"{total} files are copies of a picture already listed, stored once:"]
    for copy, first in copies[:show]:
        lines.append(f"  {_short(copy, folder)} = {_short(first, folder)}")
    if total > min(show, len(copies)):
        lines.append(f"  ... and {total - min(show, len(copies))} more.")
    return "\n".join(lines)


def _short(path: str, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return path


def say(line: str) -> None:
    print(line, file=sys.stderr)
