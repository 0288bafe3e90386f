"""Downloads for `make demo`, shown as they happen: the dataset zip and the CLIP model.

`download` fetches one file over HTTP(S) with a tqdm bar (size, speed, ETA) on the terminal that ran
the command. It writes to `<target>.part` and renames only when the whole file is there, so a
stopped download is never mistaken for a finished one; the next attempt (in the same run after a
dropped connection, or a later run) asks for the rest with an HTTP Range request and appends to the
.part file. A server that ignores Range answers with the whole file, which then starts over. A zip is
checked (every member's CRC, `zipfile.testzip`) before it is used; a bad one is deleted with a
sentence saying so. Written on urllib rather than a download library: the project's dependencies
have none for plain HTTP files, and resuming is the one thing needed beyond copying bytes.

`download_model` fetches a Hugging Face model with `huggingface_hub.snapshot_download`, whose own
tqdm bars show each file, into the cache the embedder reads, so the embedder starts without
downloading anything.
"""
from __future__ import annotations

import re
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from services.common.config import hub_allow_patterns

CHUNK = 1 << 20
ATTEMPTS = 4


class DownloadError(Exception):
    """A download that could not be completed or checked; the message says what to do."""


def download(url: str, target: Path, *, timeout: float = 60.0, attempts: int = ATTEMPTS,
             check_zip: bool | None = None, progress: bool = True, retry_pause_s: float = 1.0) -> Path:
    """`target`, downloaded unless it is already there (and, for a zip, passes its check)."""
    target = Path(target)
    check_zip = target.suffix == ".zip" if check_zip is None else check_zip
    if target.exists():
        if not check_zip or _zip_is_good(target):
            return target
        target.unlink()
        print(f"{target} was damaged (its zip check failed); deleted it and downloading it again.", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    print(f"downloading {url}\n  -> {target}", file=sys.stderr)
    for attempt in range(1, attempts + 1):
        try:
            _fetch(url, partial, timeout=timeout, progress=progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                raise DownloadError(f"{url} answered HTTP {exc.code}; the download cannot go on.") from None
            if attempt == attempts:
                have = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(f"The download of {url} stopped ({exc}) after {attempts} attempts; "
                                    f"{have:,} bytes are kept in {partial}, and running the command again "
                                    "resumes from there.") from None
            print(f"the download stopped ({exc}); resuming (attempt {attempt + 1} of {attempts})", file=sys.stderr)
            time.sleep(retry_pause_s)
    if check_zip and not _zip_is_good(partial):
        partial.unlink(missing_ok=True)
        raise DownloadError(f"The file downloaded from {url} is not a valid zip (its check failed); it was "
                            "deleted. Run the command again to download it afresh.")
    partial.replace(target)
    return target


def _fetch(url: str, partial: Path, *, timeout: float, progress: bool) -> None:
    """Fill `partial` with the whole file, continuing from its current size when the server allows."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (the demo's fixed URLs)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we have: the .part file is already whole
            return
        raise
    with response:
        start = _resume_offset(response, have)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        from tqdm import tqdm

        with open(partial, "r+b" if start else "wb") as handle, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                     desc=partial.name.removesuffix(".part"), disable=not progress) as bar:
            handle.seek(start)
            handle.truncate()
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))
            written = handle.tell()
    if total is not None and written < total:
        raise ConnectionError(f"the connection closed after {written:,} of {total:,} bytes")


def _resume_offset(response, have: int) -> int:
    """Where this response's bytes go: `have` for a 206 that continues there, else 0 (the whole file)."""
    if response.status != 206:
        return 0
    found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if not found or int(found.group(1)) != have:
        raise ConnectionError("the server sent a range other than the one asked for")
    return have


def _zip_is_good(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def download_model(name: str) -> str | None:
    """Download the model `name` from the Hugging Face hub into its cache, with progress bars; the
    local folder, or None when `name` is a local folder or huggingface_hub is not installed (the
    embedder then loads or downloads it itself)."""
    if not name or Path(name).expanduser().is_dir():
        return None
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        return None
    try:
        # The same files the embedder would fetch at its first start (services/common/config.py).
        patterns = hub_allow_patterns(HfApi().list_repo_files(name))
        print(f"downloading the model {name} (once; later starts use the cache)", file=sys.stderr)
        folder = snapshot_download(name, allow_patterns=patterns)
    except Exception as exc:  # the hub's errors are many (HTTP, offline, not found): each says what it is
        raise DownloadError(f"The model {name} could not be downloaded ({exc}). Running the command again "
                            "resumes it; what arrived is kept in the Hugging Face cache.") from None
    base = _mclip_base(Path(folder))
    if base:
        # An M-CLIP tower names its transformer's architecture by hub name; only that config is read.
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(base, "config.json")
        except Exception as exc:
            raise DownloadError(f"The config of {base}, the base of {name}, could not be downloaded ({exc}).") from None
    return folder


def download_models(image_model: str, text_model: str = "auto") -> None:
    """The image model and the text tower the embedder will serve with it (EMBEDDER_TEXT_MODEL)."""
    from services.common.config import AUTO_TEXT_MODELS

    download_model(image_model)
    text = (text_model or "").strip()
    text = AUTO_TEXT_MODELS.get(image_model, "") if text.lower() == "auto" else text
    if text and text.lower() not in ("same", "none") and text != image_model:
        download_model(text)


def _mclip_base(folder: Path) -> str | None:
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    base = config.get("modelBase") if config.get("model_type") == "M-CLIP" else None
    return base if base and not Path(base).expanduser().is_dir() else None
