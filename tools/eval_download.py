"""`make eval-download`: fetch a public multilingual captions set into the layout `make eval` reads.

    python -m tools.eval_download xtd10|crossmodal3600 [--dest data/eval/NAME] [--languages es,en,...]
                                  [--limit N] [--captions-url URL] [--images-url URL]

Writes `DEST/images/*.jpg` and `DEST/captions.jsonl` (one line a caption:
`{"image": "images/x.jpg", "lang": "es", "caption": "..."}`).

- **xtd10**: 1,000 MS-COCO 2014 images with one caption each in 11 languages, from Adobe Research's
  Cross-lingual-Test-Dataset-XTD10 repository (es, it, ko, pl, ru, tr, zh in XTD10/; en, de, fr from
  MIC/; ja from STAIR/; line N of each file captions line N of XTD10/test_image_names.txt). The
  images come one by one from the COCO image server; the list names them as they are there
  (mostly COCO_train2014_*, some COCO_val2014_*), so each is fetched from its own split's folder.
  Adobe's license: research use (see the repository's LICENSE.md).
- **crossmodal3600**: Google's 3,600 images with captions in 36 languages (usually two per image and
  language; CC BY 4.0): captions.zip from the dataset's page and the images tarball (302 MB) from the
  Open Images bucket, extracted as `<image key>.jpg`.

Every base URL can be changed with an option or an environment variable (EVAL_XTD10_CAPTIONS_URL,
EVAL_COCO_IMAGES_URL, EVAL_XM3600_CAPTIONS_URL, EVAL_XM3600_IMAGES_URL): a mirror, or the tests' local
server. Files go through `tools.download.download`: written as `.part` and renamed only when whole,
resumed with HTTP Range on the next run, and skipped when already there. The downloaded sources stay
in `DEST/.source/` (a few MB) except the images tarball, deleted once its images are extracted. When
a download fails, one sentence says which and why, and the command exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tools.download import DownloadError, download

log = logging.getLogger(__name__)

XTD10_CAPTIONS_URL = "https://raw.githubusercontent.com/adobe-research/Cross-lingual-Test-Dataset-XTD10/main"
COCO_IMAGES_URL = "http://images.cocodataset.org"
XM3600_CAPTIONS_URL = "https://google.github.io/crossmodal-3600/web-data/captions.zip"
XM3600_IMAGES_URL = "https://open-images-dataset.s3.amazonaws.com/crossmodal-3600/images.tgz"

XTD10_IMAGE_LIST = "XTD10/test_image_names.txt"
# Language -> its captions file in the repository (Japanese is named `jp` there).
XTD10_FILES = {
    "en": "MIC/test_1kcaptions_en.txt", "de": "MIC/test_1kcaptions_de.txt", "fr": "MIC/test_1kcaptions_fr.txt",
    **{lang: f"XTD10/test_1kcaptions_{lang}.txt" for lang in ("es", "it", "ko", "pl", "ru", "tr", "zh")},
    "ja": "STAIR/test_1kcaptions_jp.txt",
}
XM3600_LANGUAGES = (
    "ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro ru sv sw te th tr uk vi zh"
).split()
SETS = ("xtd10", "crossmodal3600")
ALIASES = {"jp": "ja"}
IMAGE_THREADS = 8
_COCO_NAME = re.compile(r"COCO_([a-z]+\d{4})_\d+\.jpg")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+\.jpg")


class FetchError(Exception):
    """What failed, as one sentence; `exit_code` 2 for a request the set cannot meet, 1 for a failure."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _languages(asked: str | None, known: list[str] | tuple[str, ...]) -> list[str]:
    if not asked:
        return list(known)
    chosen = [ALIASES.get(code.strip().lower(), code.strip().lower()) for code in asked.split(",") if code.strip()]
    unknown = [code for code in chosen if code not in known]
    if unknown:
        raise FetchError(f"This set has no captions in {', '.join(unknown)}; it has {', '.join(known)}.", 2)
    return chosen


def _fetch(url: str, target: Path) -> Path:
    try:
        return download(url, target)
    except DownloadError as error:
        raise FetchError(str(error)) from None


@contextlib.contextmanager
def _quiet_downloads():
    """`download` announces each file it fetches; for a thousand small images one bar for the whole set
    says more. Its lines go nowhere meanwhile (a failure still raises, and is reported)."""
    real = sys.stderr
    sys.stderr = io.StringIO()
    try:
        yield real
    finally:
        sys.stderr = real


def _write_captions(dest: Path, rows: list[dict]) -> Path:
    """captions.jsonl, written whole or not at all."""
    target = dest / "captions.jsonl"
    partial = target.with_name(target.name + ".part")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    partial.replace(target)
    return target


def xtd10(dest: Path, languages: list[str], limit: int | None, captions_url: str, images_url: str) -> tuple[int, int]:
    """Fetch XTD10 into `dest`; (images, captions) written."""
    from tqdm import tqdm

    source = dest / ".source"
    captions_url, images_url = captions_url.rstrip("/"), images_url.rstrip("/")
    # Line N of every file is image N: blank lines are kept, so the files stay aligned.
    names = [line.strip() for line in _fetch(f"{captions_url}/{XTD10_IMAGE_LIST}", source / XTD10_IMAGE_LIST)
             .read_text(encoding="utf-8").rstrip("\n").split("\n")]
    captions = {}
    for lang in languages:
        path = _fetch(f"{captions_url}/{XTD10_FILES[lang]}", source / XTD10_FILES[lang])
        lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
        if len(lines) != len(names):
            raise FetchError(f"{XTD10_FILES[lang]} has {len(lines)} lines for {len(names)} images in "
                             f"{XTD10_IMAGE_LIST}, so its captions cannot be matched to the images.")
        captions[lang] = lines
    chosen = [(number, name) for number, name in enumerate(names) if _COCO_NAME.fullmatch(name)][:limit]

    def one(name: str) -> str | None:
        try:
            download(f"{images_url}/{_COCO_NAME.fullmatch(name).group(1)}/{name}", dest / "images" / name,
                     progress=False)
            return None
        except DownloadError as error:
            return str(error)

    failures = []
    with _quiet_downloads() as terminal, ThreadPoolExecutor(IMAGE_THREADS) as pool, \
            tqdm(total=len(chosen), unit="image", desc="COCO images", file=terminal) as bar:
        for error in pool.map(one, [name for _, name in chosen]):
            if error:
                failures.append(error)
            bar.update()
    if failures and len(failures) == len(chosen):
        raise FetchError(f"No image could be downloaded from {images_url}: {failures[0]}")
    if failures:
        print(f"{len(failures)} of {len(chosen)} images could not be downloaded and are left out "
              f"(running the command again retries them); the first: {failures[0]}", file=sys.stderr)
    rows = [{"image": f"images/{name}", "lang": lang, "caption": captions[lang][number].strip()}
            for number, name in chosen if (dest / "images" / name).is_file()
            for lang in languages if captions[lang][number].strip()]
    _write_captions(dest, rows)
    return len({row["image"] for row in rows}), len(rows)


def crossmodal3600(dest: Path, languages: list[str], limit: int | None, captions_url: str,
                   images_url: str) -> tuple[int, int]:
    """Fetch Crossmodal-3600 into `dest`; (images, captions) written."""
    from tqdm import tqdm

    source = dest / ".source"
    archive = _fetch(captions_url, source / "captions.zip")
    with zipfile.ZipFile(archive) as opened:
        member = next((name for name in opened.namelist() if name.rsplit("/", 1)[-1] == "captions.jsonl"), None)
        if member is None:
            raise FetchError(f"{captions_url} holds no captions.jsonl, so it is not the Crossmodal-3600 captions.")
        lines = opened.read(member).decode("utf-8").splitlines()
    entries = []  # (image key, [(lang, caption), ...])
    for line in lines:
        row = json.loads(line) if line.strip() else {}
        key = str(row.get("image/key", ""))
        if not _SAFE_NAME.fullmatch(f"{key}.jpg"):
            continue
        found = []
        for lang in languages:
            entry = row.get(lang)
            texts = (entry.get("caption") if isinstance(entry, dict) else None) or []
            found += [(lang, text.strip()) for text in ([texts] if isinstance(texts, str) else texts) if text.strip()]
        if found:
            entries.append((key, found))
    entries = entries[:limit]
    images = dest / "images"
    missing = {f"{key}.jpg" for key, _ in entries if not (images / f"{key}.jpg").is_file()}
    if missing:
        tarball = _fetch(images_url, source / "images.tgz")
        images.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tarball, "r|*") as stream, \
                    tqdm(total=len(missing), unit="image", desc="extracting", file=sys.stderr) as bar:
                # Streamed member by member; only the wanted JPEGs, under their own base name (no path
                # from the archive is used, so nothing lands outside images/).
                for member in stream:
                    name = member.name.rsplit("/", 1)[-1]
                    if not member.isfile() or name not in missing:
                        continue
                    partial = images / f"{name}.part"
                    partial.write_bytes(stream.extractfile(member).read())
                    partial.replace(images / name)
                    missing.discard(name)
                    bar.update()
        except (tarfile.TarError, OSError, EOFError) as error:
            tarball.unlink(missing_ok=True)
            raise FetchError(f"The images tarball from {images_url} could not be read ({error}); it was deleted, "
                             "so running the command again downloads it afresh.") from None
        tarball.unlink(missing_ok=True)  # the images are out; 302 MB need not stay
        if missing:
            print(f"{len(missing)} images named in the captions are not in the tarball and are left out.",
                  file=sys.stderr)
    rows = [{"image": f"images/{key}.jpg", "lang": lang, "caption": text}
            for key, found in entries if (images / f"{key}.jpg").is_file() for lang, text in found]
    _write_captions(dest, rows)
    return len({row["image"] for row in rows}), len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_download",
                                     description="Fetch a public multilingual captions set for make eval.")
    parser.add_argument("name", help="xtd10 or crossmodal3600")
    parser.add_argument("--dest", type=Path, help="where to write it (default data/eval/NAME)")
    parser.add_argument("--languages", help="comma-separated language codes (default: every language of the set)")
    parser.add_argument("--limit", type=int, help="only the first N images and their captions (Crossmodal-3600's "
                                                  "images come in one tarball, fetched whole all the same)")
    parser.add_argument("--captions-url", help="where the captions are: XTD10's repository root (raw files), or "
                                               "Crossmodal-3600's captions.zip")
    parser.add_argument("--images-url", help="where the images are: the COCO image server's root, or "
                                             "Crossmodal-3600's images.tgz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    name = args.name.lower().replace("-", "").replace("_", "")
    if name not in SETS:
        print(f"Unknown set {args.name!r}: choose xtd10 or crossmodal3600.", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("--limit must be at least 1.", file=sys.stderr)
        return 2
    dest = args.dest or Path("data") / "eval" / name
    try:
        if name == "xtd10":
            languages = _languages(args.languages, list(XTD10_FILES))
            images, captions = xtd10(
                dest, languages, args.limit,
                args.captions_url or os.environ.get("EVAL_XTD10_CAPTIONS_URL") or XTD10_CAPTIONS_URL,
                args.images_url or os.environ.get("EVAL_COCO_IMAGES_URL") or COCO_IMAGES_URL)
        else:
            languages = _languages(args.languages, XM3600_LANGUAGES)
            images, captions = crossmodal3600(
                dest, languages, args.limit,
                args.captions_url or os.environ.get("EVAL_XM3600_CAPTIONS_URL") or XM3600_CAPTIONS_URL,
                args.images_url or os.environ.get("EVAL_XM3600_IMAGES_URL") or XM3600_IMAGES_URL)
    except FetchError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as error:
        print(f"A downloaded file of {name} is not what the set publishes ({error}); delete {dest / '.source'} "
              "and run the command again.", file=sys.stderr)
        return 1
    print(f"Wrote {images} images and {captions} captions in {len(languages)} language"
          f"{'s' if len(languages) != 1 else ''} to {dest}; next: make eval DATA={dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
