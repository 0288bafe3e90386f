"""What a checkpoint is, before any weights are read: its folder, its family, what it declares.

Every model name is first made a local folder: a folder as given, or the Hugging Face snapshot of a hub
name (downloaded once with the internet, read from the cache without it). The family is then read
from the folder's own files, the way each reference library recognises its format:

| family            | recognised by                                             | towers       |
| ----------------- | --------------------------------------------------------- | ------------ |
| `clip`            | `config.json` model_type "clip"                           | image + text |
| `siglip`          | model_type "siglip", any tokenizer but Gemma's            | image + text |
| `siglip2`         | model_type "siglip" with a Gemma tokenizer (FixRes ones)  | image + text |
| `st-multilingual` | `modules.json` (a sentence-transformers folder)           | text         |
| `mclip`           | model_type "M-CLIP" (the `multilingual-clip` package's)   | text         |

A text tower serves an image model's vectors only if it was distilled from that model: its declared
teacher must name the image model, and its output dimension must equal the image model's. The
teacher comes from `EMBEDDER_TEXT_TEACHER` when set, else the `teacher:` line of a replica's
`RANDOM_WEIGHTS` marker, else the table of published towers below.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from services.common.config import AUTO_TEXT_MODELS, hub_allow_patterns

RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"
IMAGE_FAMILIES = ("clip", "siglip", "siglip2")
TEXT_FAMILIES = ("st-multilingual", "mclip")
FAMILIES = IMAGE_FAMILIES + TEXT_FAMILIES

# Published text towers, by hub name: the image model each was distilled from (model cards).
KNOWN_TEACHERS = {
    "sentence-transformers/clip-vit-b-32-multilingual-v1": "openai/clip-vit-base-patch32",
    "m-clip/xlm-roberta-large-vit-b-32": "openai/clip-vit-base-patch32",
    "m-clip/xlm-roberta-large-vit-l-14": "openai/clip-vit-large-patch14",
    "m-clip/labse-vit-l-14": "openai/clip-vit-large-patch14",
}

# Languages (ISO 639-1; regional variants folded) each family's published towers were trained or
# evaluated on, from their model cards.
_ST_MULTILINGUAL = ("ar bg ca cs da de el en es et fa fi fr gl gu he hi hr hu hy id it ja ka ko ku lt lv mk mn "
                    "mr ms my nb nl pl pt ro ru sk sl sq sr sv th tr uk ur vi zh")
_MCLIP = ("ar az bg bn ca cs da de el en es et fa fi fr he hi hr hu hy id is it ja ka kk ko lt lv mk mn ms nl "
          "no pl ps pt ro ru sk sl sq sr sv sw th tl tr uk ur vi zh")
# SigLIP 2's training data is multilingual; these are the 36 languages of Crossmodal-3600, where it
# was measured.
_XM3600 = ("ar bn cs da de el en es fa fi fr he hi hr hu id it ja ko mi nl no pl pt ro ru sv sw te th tr uk "
           "vi zh fil quz")
LANGUAGES = {
    "clip": ("en",),
    "siglip": ("en",),
    "siglip2": tuple(_XM3600.split()),
    "st-multilingual": tuple(_ST_MULTILINGUAL.split()),
    "mclip": tuple(_MCLIP.split()),
}


class CheckpointError(ValueError):
    """A checkpoint the embedder will not serve; the message names the file or the mismatch."""


def local_folder(name: str) -> Path:
    """The folder holding the checkpoint `name`: the folder itself, or its hub snapshot."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise CheckpointError(f"The model folder {name} does not exist.")
    from huggingface_hub import HfApi, snapshot_download

    try:
        # Already downloaded (`make demo` fetches the models before the embedder starts): the cache.
        cached = Path(snapshot_download(name, local_files_only=True))
        if (cached / "config.json").is_file() or (cached / "modules.json").is_file():
            return cached
    except Exception:  # not in the cache: download below
        pass
    try:
        patterns = hub_allow_patterns(HfApi().list_repo_files(name))
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:  # the hub's errors are many (offline, not found, gated): each says what it is
        raise CheckpointError(f"The model {name!r} is neither a local folder nor in the Hugging Face cache, and "
                              f"could not be downloaded ({type(exc).__name__}: {exc}). Download it with the "
                              "internet (`make demo` does), or point at a local folder.") from None


def read_json(folder: Path, name: str, family: str | None = None) -> dict:
    path = folder / name
    what = f"a {family} checkpoint" if family else "a checkpoint"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {what} needs it.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read as JSON ({exc}).") from None


def require_files(folder: Path, family: str, *alternatives: tuple[str, ...]) -> dict[str, Path]:
    """For each group of alternative file names, the first present; a group with none names them all."""
    found = {}
    for names in alternatives:
        present = [folder / name for name in names if (folder / name).is_file()]
        if not present:
            listed = " or ".join(names)
            raise CheckpointError(f"{folder} has no {listed}: a {family} checkpoint needs it.")
        found[names[0]] = present[0]
    return found


def detect_family(folder: Path) -> str:
    if (folder / "modules.json").is_file():
        return "st-multilingual"
    config = read_json(folder, "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type == "M-CLIP":
        return "mclip"
    if model_type == "clip":
        return "clip"
    if model_type == "siglip":
        return "siglip2" if _gemma_tokenizer(folder, config) else "siglip"
    if model_type == "siglip2":
        raise CheckpointError(f"{folder} is a SigLIP 2 NaFlex checkpoint (model_type \"siglip2\"), which this "
                              "embedder does not serve yet; use a FixRes one such as google/siglip2-base-patch16-224.")
    raise CheckpointError(f"{folder / 'config.json'} names the model type {model_type or 'nothing'!r}; the "
                          f"embedder serves these families: CLIP, SigLIP, SigLIP 2, sentence-transformers "
                          "multilingual text towers and M-CLIP.")


def _gemma_tokenizer(folder: Path, config: dict) -> bool:
    try:
        tokenizer_class = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class") or ""
    except (OSError, ValueError):
        tokenizer_class = ""
    vocab = (config.get("text_config") or {}).get("vocab_size")
    return tokenizer_class.startswith("Gemma") or vocab == 256000


def random_weights(folder: Path) -> bool:
    return (folder / RANDOM_WEIGHTS_MARKER).is_file()


def hub_name(name: str, folder: Path) -> str | None:
    """The hub name of a checkpoint: the name given, or the repository a cache snapshot belongs to."""
    if not Path(name).expanduser().is_dir() and name.count("/") == 1:
        return name
    match = re.search(r"models--([^/]+?)--([^/]+)/snapshots/", str(folder))
    return f"{match.group(1)}/{match.group(2)}" if match else None


def identities(name: str, folder: Path) -> set[str]:
    """Every name an image model answers to when a text tower names its teacher (lower case)."""
    names = {name, str(folder), str(folder.resolve())}
    hub = hub_name(name, folder)
    if hub:
        names.add(hub)
    try:
        declared = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError):
        declared = None
    if declared:
        names.add(str(declared))
    return {n.lower().rstrip("/") for n in names}


def declared_teacher(name: str, folder: Path, override: str = "") -> str | None:
    if override:
        return override
    marker = folder / RANDOM_WEIGHTS_MARKER
    if marker.is_file():
        for line in marker.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("teacher:"):
                return line.split(":", 1)[1].strip()
    hub = hub_name(name, folder)
    return KNOWN_TEACHERS.get(hub.lower()) if hub else None


def auto_text_model(image_model: str, folder: Path) -> str | None:
    """The multilingual tower "auto" pairs with this image model, or None for its own text tower."""
    hub = hub_name(image_model, folder)
    return AUTO_TEXT_MODELS.get(hub) if hub else None
