"""Random-weight replicas of the model families the embedder can serve, one module per family.

Each writer lays a folder out exactly as a downloaded checkpoint of its family (same file names, same
config formats), fills it with random weights drawn from a fixed seed, and adds the `RANDOM_WEIGHTS`
marker. The front door is `tools/random_model.py`; this module holds what every family shares: the
marker, the seed, and how a text tower finds the dimension of the image model it is aligned to.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER_NAME = "RANDOM_WEIGHTS"
SIZES = ("tiny", "b32")
SEED = 0
# The real multilingual text towers were distilled from this model's text tower.
DEFAULT_TEACHER = "openai/clip-vit-base-patch32"
# Output dimension of a text tower that is not aligned to a given image model: the real towers' 512,
# or the tiny CLIP's projection dimension, so tiny towers pair with the tiny CLIP.
DEFAULT_TEXT_DIMS = {"tiny": 64, "b32": 512}


def marker_text(what: str, teacher: str | None = None) -> str:
    text = (
        f"This {what} has random weights. It was written by tools/random_model.py for tests and "
        "benchmarks; its vectors carry no meaning, so search results made with it are meaningless.\n"
    )
    if teacher is not None:
        # Last line, so a loader can read it without parsing the prose above.
        text += f"teacher: {teacher}\n"
    return text


def write_marker(folder: Path, what: str, teacher: str | None = None) -> None:
    (folder / MARKER_NAME).write_text(marker_text(what, teacher))


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")


def image_model_dim(image_dir: str | Path) -> int:
    """The dimension of the shared vector space of the CLIP or SigLIP checkpoint in `image_dir`.

    Read through AutoConfig rather than from the JSON, because real configs leave out every value
    that equals the library default (google/siglip-base-patch16-224 names no hidden size at all).
    """
    from transformers import AutoConfig

    folder = Path(image_dir)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--aligned-to wants a folder holding an image model's config.json; {folder} has none")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type == "clip":
        return int(config.projection_dim)
    if config.model_type in ("siglip", "siglip2"):
        text = config.text_config
        return int(getattr(text, "projection_size", None) or text.hidden_size)
    raise ValueError(f"--aligned-to wants a CLIP or SigLIP checkpoint; {folder} holds a {config.model_type!r} model")


def text_tower_target(size: str, aligned_to: str | Path | None) -> tuple[int, str]:
    """(output dimension, teacher) of a text tower: the aligned image model's, or the real towers'."""
    if aligned_to is None:
        return DEFAULT_TEXT_DIMS[size], DEFAULT_TEACHER
    return image_model_dim(aligned_to), str(Path(aligned_to).resolve())
