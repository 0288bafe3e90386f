"""The two towers the embedder serves: an image model, and the text tower that shares its space.

`load_towers` chooses the runtime once, loads the image model by its family, then the text tower: the
image model's own, or a separate multilingual one (`EMBEDDER_TEXT_MODEL`) that was distilled into the
image model's space, so the photos already stored answer queries in 50+ languages. The separate
tower is refused, before the embedder is ready, unless its declared teacher is the image model and
its dimension equals the image model's.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from services.embedder.models import checkpoint
from services.embedder.models.checkpoint import CheckpointError
from services.embedder.models.clip import ClipTowers
from services.embedder.models.mclip import MclipText
from services.embedder.models.runtime import Runtime, TextResult
from services.embedder.models.siglip import Siglip2Towers, SiglipTowers
from services.embedder.models.st_multilingual import SentenceTransformerText
from services.embedder.models.text import TextTower
from services.embedder.models.vision import VisionTower

log = logging.getLogger(__name__)

IMAGE_LOADERS = {"clip": ClipTowers, "siglip": SiglipTowers, "siglip2": Siglip2Towers}
TEXT_LOADERS = {"st-multilingual": SentenceTransformerText, "mclip": MclipText}
# "same": the image model's own text tower; "auto": a multilingual tower where one is published for
# the image model (checkpoint.AUTO_TEXT_MODELS), else the image model's own.
OWN_TEXT = ("", "same", "none")


class Towers:
    """What the service calls: images go to `image`, texts to `text`, both in one vector space."""

    def __init__(self, image: VisionTower, text: TextTower):
        self.image = image
        self.text = text
        self.name = image.name
        self.dim = image.dim
        self.random_weights = image.random_weights or text.random_weights

    # The image side, as the service and the workers see it.
    @property
    def crop(self):
        return self.image.crop

    @property
    def image_size(self) -> int:
        return self.image.image_size

    @property
    def max_tokens(self) -> int:
        return self.text.max_tokens

    def prepare_images(self, images: list):
        return self.image.prepare_images(images)

    def prepare_crops(self, crops):
        return self.image.prepare_crops(crops)

    def embed_images(self, pixel_batches: list) -> list:
        return self.image.embed_images(pixel_batches)

    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        return self.text.embed_texts(texts)

    def warm_up(self) -> None:
        """One image and two texts through the towers, so that the first request does not pay for
        the kernels built on first use (oneDNN's for each new shape on the CPU, cuBLAS's on CUDA)."""
        self.image.warm_up_images()
        self.text.warm_up_texts()

    def info(self) -> dict:
        return {**self.image.image_info(), **self.text.text_info(), "random_weights": self.random_weights}


def load_towers(model: str, text_model: str = "auto", device: str = "auto", dtype: str = "auto", threads: int = 0,
                fast_preprocess: bool = True, text_teacher: str = "", warm_up: bool = True, backend: str = "auto",
                onnx_cache: str = "") -> Towers:
    started = time.perf_counter()
    try:
        runtime = Runtime.choose(device, dtype, threads, backend, onnx_cache)
    except ValueError as exc:  # a backend that cannot run here: a sentence, like a bad checkpoint
        raise CheckpointError(str(exc)) from None
    folder = checkpoint.local_folder(model)
    family = checkpoint.detect_family(folder)
    if family not in IMAGE_LOADERS:
        raise CheckpointError(f"{model} is a {family} text tower, not an image model: set EMBEDDER_MODEL to the "
                              f"image model it was distilled from and EMBEDDER_TEXT_MODEL={model}.")
    text_name = (text_model or "").strip()
    if text_name.lower() == "auto":
        text_name = checkpoint.auto_text_model(model, folder) or ""
    own_text = text_name.lower() in OWN_TEXT or text_name == model
    image = IMAGE_LOADERS[family].load(model, folder, runtime, fast_preprocess, own_text=own_text)
    if own_text:
        text: TextTower = image
    else:
        text = load_text_tower(text_name, model, folder, image.dim, runtime, text_teacher)
    towers = Towers(image, text)
    if warm_up:
        towers.warm_up()
    log.info("loaded %s (%s) with the text tower %s (%s) on %s (%s, %s, dim %d, fingerprint %s%s) in %.1fs", model,
             family, text.name, text.family, runtime.device, runtime.backend, runtime.precision, image.dim,
             image.fingerprint,
             ", RANDOM WEIGHTS: results are meaningless" if towers.random_weights else "",
             time.perf_counter() - started)
    return towers


def load_text_tower(name: str, image_model: str, image_folder: Path, image_dim: int, runtime: Runtime,
                    teacher_override: str = "") -> TextTower:
    folder = checkpoint.local_folder(name)
    family = checkpoint.detect_family(folder)
    if family not in TEXT_LOADERS:
        raise CheckpointError(f"EMBEDDER_TEXT_MODEL={name} is a {family} model with towers of its own; a separate "
                              f"text tower is a {' or '.join(TEXT_LOADERS)} checkpoint.")
    teacher = checkpoint.declared_teacher(name, folder, teacher_override)
    if teacher is None:
        raise CheckpointError(f"The text model {name} declares no teacher, so nothing says its vectors live in the "
                              f"space of {image_model}; if it was distilled from that model, set "
                              f"EMBEDDER_TEXT_TEACHER={image_model}.")
    if teacher.lower().rstrip("/") not in checkpoint.identities(image_model, image_folder):
        raise CheckpointError(f"The text model {name} was distilled from {teacher}, not from the image model "
                              f"{image_model}: its vectors would not meet the stored image vectors. Use a text "
                              f"tower made for {image_model}, or set EMBEDDER_MODEL={teacher}.")
    text = TEXT_LOADERS[family].load(name, folder, runtime, teacher)
    if text.dim != image_dim:
        raise CheckpointError(f"The text model {name} gives {text.dim}-dimensional vectors, but the image model "
                              f"{image_model} gives {image_dim}-dimensional ones; a text tower must match its "
                              "image model.")
    return text
