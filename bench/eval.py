"""How well does a model find a photo from a sentence in your language? Text-to-image recall per language.

    python -m bench.eval DATA [--model M] [--text-model T] [--device auto|cpu|cuda]
                              [--dtype auto|float32|...] [--batch 32] [--output PATH]

DATA is a captions set: `DATA/images/*.jpg` and `DATA/captions.jsonl`, one caption a line,
`{"image": "images/x.jpg", "lang": "es", "caption": "..."}` (`make eval-download` writes XTD10 and
Crossmodal-3600 that way). Every image is embedded once, in batches, decoded by the service's own
`decode_image` (EXIF orientation, transparency, size limits); every caption is embedded in batches.
For each caption all images of the set are ranked by cosine similarity to it, images without a
caption included (they are distractors, as in a photo library); recall@k is the share of captions
whose image is among the first k. An image that scores the same as the right one counts as ranked
before it, so a model that gives many images the same vector gets no credit for the tie.

Prints a table (per language and "all", every caption of every language counted once: R@1, R@5,
R@10 and their mean, in percent) and writes `bench/results/eval-<set>-<model>.json`. Lines of
captions.jsonl that cannot be used (not JSON, a key missing, an image not in images/) are counted
and named in one sentence; an image that does not decode is left out with its captions, also said.
The model is loaded in this process, not through the embedder service, so the numbers are the
model's own. A model with random weights (`make random-model`) scores at chance level, k / images;
the output says so.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import format_table, machine_info, write_results
from services.common.config import DEFAULT_MODEL
from services.common.errors import ServiceError
from services.media.decode import decode_image

log = logging.getLogger(__name__)

KS = (1, 5, 10)
IMAGE_SUFFIXES = (".jpg", ".jpeg")
# The embedder's own per-image limits (EmbedderSettings' defaults), so a picture the service would
# refuse is refused here too.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000
# Captions compared with all images at once: a block of this many rows of the similarity matrix
# (with 3,600 images, 1,024 rows are 15 MB), so 36 languages of Crossmodal-3600 fit in memory.
SCORE_BLOCK = 1024


class EvalError(Exception):
    """A reason the evaluation cannot run, as one sentence for the person who ran it; `exit_code` 2 for
    what was asked (no data, a refused option), 1 for what failed (the model did not load)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class Percent(float):
    """A percentage that `format_table` prints with one decimal (its own rule gives small numbers two)
    and still right-aligns as a number."""

    def __format__(self, spec: str) -> str:
        return f"{float(self):.1f}"


def load_towers(model: str, text_model: str | None, device: str, dtype: str):
    """The model's image and text towers, loaded in this process by the embedder's own loader. No
    text model given: the loader's default ("auto": a multilingual tower where one is published for
    the image model, else the model's own)."""
    from services.embedder.models import load_towers as load

    return load(model, text_model or "auto", device=device, dtype=dtype)


# -- the captions set ------------------------------------------------------------------------------


@dataclass
class CaptionSet:
    name: str
    images: list[Path]
    captions: list[tuple[int, str, str]]  # (image index, language, caption)
    skipped: Counter = field(default_factory=Counter)  # kind of bad line -> count
    first_bad: dict[str, int] = field(default_factory=dict)  # kind -> first line number


_BAD_KINDS = {"json": "not JSON", "keys": "without a string image, lang and caption",
              "image": "naming an image that is not in images/"}


def read_set(folder: Path) -> CaptionSet:
    """The images and the usable captions of `folder`; EvalError when there is nothing to evaluate."""
    if not folder.is_dir():
        raise EvalError(f"{folder} is not a folder; give the folder that holds images/ and captions.jsonl "
                        "(make eval-download NAME=xtd10 writes one).")
    images = sorted(p for p in (folder / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise EvalError(f"{folder / 'images'} holds no .jpg images; a captions set is images/*.jpg plus "
                        "captions.jsonl (make eval-download NAME=xtd10 writes one).")
    captions_file = folder / "captions.jsonl"
    if not captions_file.is_file():
        raise EvalError(f"{captions_file} is missing; it lists one caption a line as "
                        '{"image": "images/x.jpg", "lang": "es", "caption": "..."}.')
    index = {f"images/{path.name}": number for number, path in enumerate(images)}
    found = CaptionSet(folder.resolve().name, images, [])
    with captions_file.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            kind = None
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                kind = "json"
            else:
                values = [row.get(key) if isinstance(row, dict) else None for key in ("image", "lang", "caption")]
                if not all(isinstance(value, str) and value.strip() for value in values):
                    kind = "keys"
                else:
                    image = values[0].strip().removeprefix("./")
                    image = image if image.startswith("images/") else f"images/{image}"
                    if image not in index:
                        kind = "image"
                    else:
                        found.captions.append((index[image], values[1].strip(), values[2].strip()))
            if kind:
                found.skipped[kind] += 1
                found.first_bad.setdefault(kind, number)
    if not found.captions:
        raise EvalError(f"{captions_file} has no usable caption line" + (f" ({skipped_sentence(found)})"
                                                                         if found.skipped else "") + ".")
    return found


def skipped_sentence(found: CaptionSet) -> str:
    total = sum(found.skipped.values())
    parts = [f"{count} {_BAD_KINDS[kind]} (first at line {found.first_bad[kind]})"
             for kind, count in found.skipped.items()]
    return f"{total} line{'s' if total != 1 else ''} of captions.jsonl skipped: {', '.join(parts)}"


# -- embedding ------------------------------------------------------------------------------------


def embed_images(towers, images: list[Path], batch: int, workers: int) -> tuple[dict[int, np.ndarray], list[str]]:
    """Unit vectors by image index, and "name: reason" for each image that did not decode.

    Decoding and preprocessing run in a thread pool a few batches ahead of the model (prepare_images
    is thread-safe); only that many batches are held at once, never the whole set's pixels."""
    from tqdm import tqdm

    def prepare(chunk: list[int]):
        kept, pictures, failed = [], [], []
        for number in chunk:
            try:
                pictures.append(decode_image(images[number].read_bytes(), max_bytes=MAX_IMAGE_BYTES,
                                             max_pixels=MAX_IMAGE_PIXELS))
                kept.append(number)
            except (ServiceError, OSError) as exc:
                failed.append(f"{images[number].name}: {getattr(exc, 'message', exc)}")
        return kept, towers.prepare_images(pictures) if pictures else None, failed

    vectors: dict[int, np.ndarray] = {}
    failures: list[str] = []
    chunks = [list(range(start, min(start + batch, len(images)))) for start in range(0, len(images), batch)]
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(images), unit="image", desc="images", file=sys.stderr, disable=None) as bar:
        pending: deque = deque()

        def embed_oldest() -> None:
            kept, prepared, failed = pending.popleft().result()
            if kept:
                vectors.update(zip(kept, towers.embed_images([prepared])))
            failures.extend(failed)
            bar.update(len(kept) + len(failed))

        for chunk in chunks:
            pending.append(pool.submit(prepare, chunk))
            if len(pending) > workers:
                embed_oldest()
        while pending:
            embed_oldest()
    return vectors, failures


def embed_texts(towers, texts: list[str], batch: int) -> tuple[np.ndarray, list[bool]]:
    from tqdm import tqdm

    vectors, truncated = [], []
    with tqdm(total=len(texts), unit="caption", desc="captions", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(texts), batch):
            results = towers.embed_texts(texts[start:start + batch])
            vectors += [result.vector for result in results]
            truncated += [bool(result.truncated) for result in results]
            bar.update(len(results))
    return np.stack(vectors).astype(np.float32), truncated


# -- recall ---------------------------------------------------------------------------------------


def ranks(texts: np.ndarray, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each caption, how many images rank before its own: those scoring higher, and the other images
    scoring exactly the same (a tie is no credit). 0 means first."""
    found = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), SCORE_BLOCK):
        scores = texts[start:start + SCORE_BLOCK] @ images.T
        rows = np.arange(len(scores))
        own = scores[rows, targets[start:start + SCORE_BLOCK]][:, None]
        found[start:start + SCORE_BLOCK] = (scores >= own).sum(axis=1) - 1
    return found


def recall(rank_of: np.ndarray) -> dict[str, float]:
    figures = {f"r@{k}": float((rank_of < k).mean() * 100) for k in KS}
    figures["mean"] = sum(figures.values()) / len(KS)
    return figures


def chance(images: int) -> dict[str, float]:
    """What a model that ranks at random scores, on average: k / images."""
    figures = {f"r@{k}": min(k, images) / images * 100 for k in KS}
    figures["mean"] = sum(figures.values()) / len(KS)
    return figures


def short_name(model: str) -> str:
    """`openai/clip-vit-base-patch32` -> `clip-vit-base-patch32`, a folder -> its name; safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", Path(model.rstrip("/")).name) or "model"


# -- the command ----------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    found = read_set(Path(args.data))
    if found.skipped:
        print(skipped_sentence(found) + ".")
    model = args.model or os.environ.get("EMBEDDER_MODEL") or DEFAULT_MODEL
    text_model = args.text_model or os.environ.get("EMBEDDER_TEXT_MODEL") or None
    try:
        towers = load_towers(model, text_model, args.device, args.dtype)
    except EvalError:
        raise
    except Exception as exc:  # the hub's and torch's errors are many; each names its cause
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EvalError(f"The model {model} could not be loaded ({first.rstrip('.')}).", exit_code=1) from None
    info = towers.info()
    loaded = time.perf_counter()

    workers = max(1, min(8, os.cpu_count() or 1))
    image_vectors, failures = embed_images(towers, found.images, args.batch, workers)
    if failures:
        print(f"{len(failures)} image{'s' if len(failures) != 1 else ''} did not decode and "
              f"{'were' if len(failures) != 1 else 'was'} left out with their captions: {'; '.join(failures[:3])}"
              f"{' ...' if len(failures) > 3 else ''}.")
    kept = sorted(image_vectors)
    position = {number: row for row, number in enumerate(kept)}
    captions = [(position[number], lang, text) for number, lang, text in found.captions if number in position]
    if not kept or not captions:
        raise EvalError("No image with a caption could be decoded, so there is nothing to rank.", exit_code=1)
    images_done = time.perf_counter()

    text_vectors, truncated = embed_texts(towers, [text for _, _, text in captions], args.batch)
    texts_done = time.perf_counter()
    matrix = np.stack([image_vectors[number] for number in kept]).astype(np.float32)
    rank_of = ranks(text_vectors, matrix, np.array([row for row, _, _ in captions]))

    languages = np.array([lang for _, lang, _ in captions])
    counts = Counter(languages.tolist())
    per_language = {}
    for lang in sorted(counts, key=lambda name: (-counts[name], name)):  # the largest first
        mask = languages == lang
        per_language[lang] = {"captions": int(mask.sum()), **recall(rank_of[mask]),
                              "truncated": int(np.array(truncated)[mask].sum())}
    overall = {"captions": len(captions), **recall(rank_of), "truncated": int(sum(truncated))}
    baseline = chance(len(kept))

    header = ["language", "captions", "R@1 %", "R@5 %", "R@10 %", "mean %"]
    rows = [[lang, figures["captions"], *(Percent(figures[key]) for key in ("r@1", "r@5", "r@10", "mean"))]
            for lang, figures in [*per_language.items(), ("all", overall)]]
    print()
    print(format_table(rows, header))
    name = info.get("name", model)
    text_name = info.get("text_model") or text_model or name
    separate = text_name != name  # a text tower of its own, e.g. a multilingual one
    print(f"\n{name}{f' + {text_name}' if separate else ''} on {found.name}: {len(kept)} images, "
          f"{len(captions)} captions in {len(per_language)} language{'s' if len(per_language) != 1 else ''}; "
          f"chance level here is R@1 {baseline['r@1']:.1f}%, R@10 {baseline['r@10']:.1f}%.")
    declared = [str(lang) for lang in info.get("languages") or []]
    outside = [lang for lang in per_language if declared and lang not in declared]
    if outside:
        print(f"The text tower declares {', '.join(declared)}; {', '.join(outside)} "
              f"{'is' if len(outside) == 1 else 'are'} outside what it was trained for.")
    if info.get("random_weights"):
        print("RANDOM WEIGHTS: this model's vectors mean nothing, so these figures are chance level, not quality.")
    if overall["truncated"]:
        print(f"{overall['truncated']} captions were longer than the text model takes and were cut short.")
    elapsed = time.perf_counter() - started
    print(f"Took {elapsed:.1f}s (load {loaded - started:.1f}s, images {images_done - loaded:.1f}s, "
          f"captions {texts_done - images_done:.1f}s).")

    def rounded(figures: dict) -> dict:
        return {key: round(value, 2) if isinstance(value, float) else value for key, value in figures.items()}

    payload = {
        "set": found.name, "data": str(Path(args.data).resolve()),
        "model": name, "text_model": text_name, "random_weights": bool(info.get("random_weights")),
        "model_info": info,
        "images": len(kept), "images_in_folder": len(found.images), "captions": len(captions),
        "skipped_lines": {_BAD_KINDS[kind]: count for kind, count in found.skipped.items()},
        "undecodable_images": failures,
        "languages": {lang: rounded(figures) for lang, figures in per_language.items()},
        "all": rounded(overall), "chance": rounded(baseline),
        "settings": {"device": args.device, "dtype": args.dtype, "batch": args.batch},
        "seconds": {"load": round(loaded - started, 2), "images": round(images_done - loaded, 2),
                    "captions": round(texts_done - images_done, 2), "total": round(elapsed, 2)},
        "machine": machine_info(),
    }
    model_part = short_name(name) + (f"+{short_name(text_name)}" if separate else "")
    written = write_results(f"eval-{short_name(found.name)}-{model_part}", payload, output=args.output)
    print(f"Wrote {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eval",
        description="Text-to-image recall@1/5/10 per language on a captions set (images/*.jpg + captions.jsonl).")
    parser.add_argument("data", help="the set's folder: images/*.jpg and captions.jsonl (make eval-download)")
    parser.add_argument("--model", help=f"image model (and text model, for a CLIP): a hub name or a folder; "
                                        f"default $EMBEDDER_MODEL or {DEFAULT_MODEL}")
    parser.add_argument("--text-model", help="a separate text tower (default $EMBEDDER_TEXT_MODEL, else the model's own)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16", "int8"])
    parser.add_argument("--batch", type=int, default=32, help="images and captions per forward pass (default 32)")
    parser.add_argument("--output", help="the JSON file to write (default bench/results/eval-<set>-<model>.json)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return evaluate(args)
    except EvalError as error:
        print(error, file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
