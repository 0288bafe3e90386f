"""The embedder's models: one module per family, one runtime chosen at start, two towers served.

| module | what it is |
| --- | --- |
| `checkpoint.py` | a model name to a local folder; the family read from its files; teachers, languages |
| `runtime.py` | device, precision, threads, int8, fingerprints: decided once for every tower |
| `vision.py`, `text.py` | what every image / text tower shares |
| `clip.py`, `siglip.py` | image families (each with its own text tower) |
| `st_multilingual.py`, `mclip.py` | multilingual text towers distilled into an image model's space |
| `towers.py` | `load_towers`: the image model plus the text tower that serves queries |
"""
from services.embedder.models.checkpoint import (
    FAMILIES,
    IMAGE_FAMILIES,
    RANDOM_WEIGHTS_MARKER,
    TEXT_FAMILIES,
    CheckpointError,
)
from services.embedder.models.runtime import TextResult, available_cores
from services.embedder.models.towers import Towers, load_towers

__all__ = ["FAMILIES", "IMAGE_FAMILIES", "RANDOM_WEIGHTS_MARKER", "TEXT_FAMILIES", "CheckpointError", "TextResult",
           "Towers", "available_cores", "load_towers"]
