"""Write a model with random weights, for tests and benchmarks on machines without the model hub.

Every family the embedder can serve has a replica: the same files, names and config formats as a
downloaded checkpoint of that family, loadable by the family's own reference library, but with random
weights from a fixed seed. `tiny` is very small (loads and embeds in well under a second on a CPU) for
tests; `b32` has the real shapes of the family's base checkpoint (and real vocabulary sizes), so
benchmarks pay the real compute cost. A `RANDOM_WEIGHTS` marker file in the folder tells the embedder
(and through it every user) that results are meaningless; text towers add a last line
`teacher: <image model>` naming the image model whose vector space they stand in for.

    python -m tools.random_model DIR --size tiny|b32 \
        --family clip|siglip|siglip2|st-multilingual|mclip [--aligned-to IMAGE_DIR]

Families (one writer module each, under tools/replicas/):
    clip             openai/clip-vit-base-patch32
    siglip           google/siglip-base-patch16-224
    siglip2          google/siglip2-base-patch16-224 (FixRes)
    st-multilingual  sentence-transformers/clip-ViT-B-32-multilingual-v1 (text only)
    mclip            M-CLIP/XLM-Roberta-Large-Vit-B-32 (text only)

`--aligned-to IMAGE_DIR` (text towers only) gives the tower the output dimension of the CLIP or
SigLIP checkpoint in IMAGE_DIR and names that folder as the teacher; without it a tower has the real
towers' 512 dimensions (64 for tiny, the tiny CLIP's) and their teacher, openai/clip-vit-base-patch32.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.replicas import MARKER_NAME, SIZES, check_size
from tools.replicas.clip import CLIP_CONFIG_DIR, MARKER_TEXT, TINY_IMAGE_SIZE, _config, write_random_clip

__all__ = ["CLIP_CONFIG_DIR", "FAMILIES", "MARKER_NAME", "MARKER_TEXT", "SIZES", "TEXT_FAMILIES",
           "TINY_IMAGE_SIZE", "_config", "main", "write_random_clip", "write_random_model"]

FAMILIES = ("clip", "siglip", "siglip2", "st-multilingual", "mclip")
TEXT_FAMILIES = ("st-multilingual", "mclip")


def check_family(family: str, aligned_to: str | Path | None = None) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if aligned_to is not None and family not in TEXT_FAMILIES:
        raise ValueError(f"--aligned-to is for the text towers ({', '.join(TEXT_FAMILIES)}); {family!r} is an "
                         "image model, whose output dimension is its own")


def write_random_model(folder: str | Path, family: str = "clip", size: str = "tiny",
                       aligned_to: str | Path | None = None) -> Path:
    """Write a random-weight replica of `family` at `size` into `folder` (created if missing); return it."""
    check_family(family, aligned_to)
    check_size(size)
    if family == "clip":
        return write_random_clip(folder, size)
    if family in ("siglip", "siglip2"):
        from tools.replicas.siglip import write_random_siglip

        return write_random_siglip(folder, size, family)
    if family == "st-multilingual":
        from tools.replicas.st_multilingual import write_random_st_multilingual

        return write_random_st_multilingual(folder, size, aligned_to)
    from tools.replicas.mclip import write_random_mclip

    return write_random_mclip(folder, size, aligned_to)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.random_model",
        description="Write a model with random weights in a real checkpoint's layout (results made with it "
                    "are meaningless).",
    )
    parser.add_argument("folder", help="folder to write the checkpoint into (created if missing)")
    parser.add_argument("--size", choices=SIZES, default="tiny",
                        help="tiny: a very small model for tests; b32: the real base-size shapes for benchmarks")
    parser.add_argument("--family", choices=FAMILIES, default="clip", help="which model family to replicate")
    parser.add_argument("--aligned-to", metavar="IMAGE_DIR",
                        help=f"text towers only ({', '.join(TEXT_FAMILIES)}): take the output dimension of the "
                             "CLIP or SigLIP checkpoint in IMAGE_DIR and name it as the teacher")
    args = parser.parse_args(argv)
    try:
        folder = write_random_model(args.folder, args.family, args.size, args.aligned_to)
    except ValueError as error:
        parser.error(str(error))
    print(f"Wrote a random-weight {args.family} ({args.size}) to {folder}. Its vectors are meaningless: "
          f"use it for tests and benchmarks only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
