"""The CLIP model behind the embedder: loading, preprocessing and forward passes.

The only module of the service that imports torch and transformers. `ClipModel.embed_texts` and
`ClipModel.embed_images` run a whole micro-batch in one forward pass; the batcher calls them from a
single worker thread, so the tokenizer (not thread-safe) and the model are used by one thread at a
time. `preprocess_images` is thread-safe and runs in the decoding pool.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPModel, CLIPProcessor

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"EMBEDDER_DEVICE is {device!r} but torch sees no CUDA device.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        # Half precision doubles throughput on a GPU; on a CPU it is slower and less exact.
        return torch.float16 if device.startswith("cuda") else torch.float32
    return _DTYPES[dtype]


def _fingerprint_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _fingerprint_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TextResult:
    vector: np.ndarray
    truncated: bool


class ClipModel:
    """A loaded CLIP checkpoint: `dim`, `info()`, and batched, normalised embedding."""

    def __init__(self, name: str, model: CLIPModel, processor: CLIPProcessor, device: str,
                 dtype: torch.dtype, fingerprint: str, random_weights: bool):
        self.name = name
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.device = device
        self.dtype = dtype
        self.fingerprint = fingerprint
        self.random_weights = random_weights
        self.dim = int(model.config.projection_dim)
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.image_size = int(model.config.vision_config.image_size)

    @classmethod
    def load(cls, name: str, device: str = "auto", dtype: str = "auto", threads: int = 0) -> ClipModel:
        started = time.perf_counter()
        torch.set_num_threads(threads or available_cores())
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        folder = Path(name)
        local = folder.is_dir()
        model = CLIPModel.from_pretrained(name, dtype=torch_dtype)
        model = model.to(device).eval()
        processor = CLIPProcessor.from_pretrained(name)
        if local:
            weights = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
            fingerprint = _fingerprint_files(weights) if weights else _fingerprint_state(model)
        else:
            fingerprint = _fingerprint_state(model)
        random_weights = local and (folder / RANDOM_WEIGHTS_MARKER).exists()
        loaded = cls(name, model, processor, device, torch_dtype, fingerprint, random_weights)
        log.info("loaded %s on %s (%s, dim %d, fingerprint %s%s) in %.1fs", name, device,
                 str(torch_dtype).removeprefix("torch."), loaded.dim, fingerprint,
                 ", RANDOM WEIGHTS: results are meaningless" if random_weights else "",
                 time.perf_counter() - started)
        return loaded

    def info(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "fingerprint": self.fingerprint,
            "random_weights": self.random_weights,
            "image_size": self.image_size,
            "max_text_tokens": self.max_tokens,
        }

    # -- images ---------------------------------------------------------------------------------

    def preprocess_images(self, images: list) -> torch.Tensor:
        """Resize, crop and normalise RGB PIL images into pixel values (CPU, float32). Thread-safe."""
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def embed_images(self, pixel_batches: list[torch.Tensor]) -> list[np.ndarray]:
        """One forward pass over the given pixel values (one tensor per image); unit vectors out."""
        pixels = torch.cat([p.reshape(-1, *p.shape[-3:]) for p in pixel_batches])
        pixels = pixels.to(self.device, dtype=self.dtype, non_blocking=True)
        features = self.model.get_image_features(pixel_values=pixels).pooler_output
        return list(self._normalised(features))

    # -- texts ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        """One forward pass over the texts; each longer than the model's context is truncated."""
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        features = self.model.get_text_features(**tokens).pooler_output
        vectors = self._normalised(features)
        return [TextResult(vector, length > self.max_tokens) for vector, length in zip(vectors, lengths)]

    @staticmethod
    def _normalised(features: torch.Tensor) -> np.ndarray:
        # Normalise in float32: in half precision the norm itself loses digits.
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)
