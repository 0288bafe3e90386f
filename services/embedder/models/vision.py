"""The image side every image family shares: preprocessing, pixel input, batched forward passes.

A family (`clip.py`, `siglip.py`) subclasses `VisionTower` with its model and its image processor
and says how to get image features; preprocessing, the CUDA transfer and normalisation are here.

Fast preprocessing (`fast_preprocess`, on by default) does CLIPProcessor's resize and crop with the
same Pillow calls but skips its numpy round trips; for pictures more elongated than 4:1 it resizes
only the part the crop keeps (Pillow's `box`), so a 50000x1 picture costs no more than a square one
instead of gigabytes. Pixels are identical up to 4:1 and within one 8-bit level beyond; vectors
match CLIPProcessor within 1e-4 (tested). Processors that are not CLIP's recipe (resize the shortest
edge, crop the centre: SigLIP resizes to a square instead) run as they are, and take no pixel input.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from PIL import Image

from services.common.images import ClipCrop
from services.embedder.models.runtime import Runtime, normalised

log = logging.getLogger(__name__)


class VisionTower:
    """An image model: `dim`, `image_size`, and batched, normalised embedding of images."""

    family = ""

    def __init__(self, name: str, image_encoder, image_processor, runtime: Runtime, fingerprint: str,
                 random_weights: bool, dim: int, image_size: int, fast_preprocess: bool = True):
        self.name = name
        # Pixel values in, features out, on the chosen backend (backends.py).
        self.image_encoder = image_encoder
        # The torch module behind it, where the backend is torch (tests look inside it).
        self.model = getattr(getattr(image_encoder, "module", None), "model", None)
        self.image_processor = image_processor
        self.runtime = runtime
        self.device = runtime.device
        self.dtype = runtime.dtype
        self.precision = runtime.precision
        self.fingerprint = fingerprint
        self.random_weights = random_weights
        self.dim = dim
        self.image_size = image_size
        # The crop and the normalisation, when the processor follows CLIP's usual recipe: the fast
        # path (unless turned off) and pre-cropped pixel input both rest on them.
        self.crop = ClipCrop.from_processor(image_processor)
        self.normaliser = Normaliser.from_processor(image_processor) if self.crop else None
        if self.crop is None:
            log.info("the image processor's settings are not CLIP's usual recipe; using it as it is")
        self.fast_preprocess = self.crop is not None and fast_preprocess
        # On CUDA the batch goes to the device as 8-bit crops and is normalised there: a quarter of
        # the bytes to copy, and no float work on the host (which would otherwise be the limit at
        # thousands of images/s). On the CPU the decoding pool normalises, beside the model thread.
        self.normalise_on_device = runtime.cuda and self.normaliser is not None
        self._device_affine: tuple[torch.Tensor, torch.Tensor] | None = None

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixel_values=pixels)

    def warm_up_images(self) -> None:
        started = time.perf_counter()
        blank = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
        self.embed_images([self.prepare_images([blank])])
        log.info("image tower warmed up in %.2fs", time.perf_counter() - started)

    def image_info(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "dim": self.dim,
            "device": self.device,
            "dtype": self.precision,
            **self.runtime.info(),
            "fingerprint": self.fingerprint,
            "random_weights": self.random_weights,
            "image_size": self.image_size,
            "fast_preprocess": self.fast_preprocess,
            # How to crop for POST /v1/embed/pixels (uint8, crop_height x crop_width x 3); None: no
            # pixel input for this processor.
            "pixel_input": self.crop.as_dict() if self.crop else None,
        }

    def prepare_images(self, images: list) -> torch.Tensor | np.ndarray:
        """What the service queues for `embed_images`: the normalised pixels, or, where the model
        normalises on its device, the 8-bit crops (N x H x W x 3). Thread-safe."""
        if self.fast_preprocess and self.normalise_on_device:
            return np.stack([self.crop(image) for image in images])
        return self.preprocess_images(images)

    def prepare_crops(self, crops: np.ndarray) -> torch.Tensor | np.ndarray:
        """The same for crops that are already cut (`/v1/embed/pixels`). Thread-safe."""
        return crops if self.normalise_on_device else self.normalise(crops)

    def preprocess_images(self, images: list) -> torch.Tensor:
        """Resize, crop and normalise RGB PIL images into pixel values (CPU, float32). Thread-safe."""
        if self.fast_preprocess:
            return self.normalise(np.stack([self.crop(image) for image in images]))
        # numpy out, then a tensor view: a torch copy here could start OpenMP work off the model thread.
        return torch.from_numpy(self.image_processor(images=images, return_tensors="np")["pixel_values"])

    def normalise(self, crops: np.ndarray) -> torch.Tensor:
        """8-bit crops (N x H x W x 3, from `crop`) to the model's pixel values (N x 3 x H x W, float32).
        Thread-safe; numpy only, so no OpenMP work starts off the model thread."""
        if self.normaliser is None:
            raise RuntimeError("this model's image processor takes no pre-cropped pixels")
        return torch.from_numpy(self.normaliser(crops))

    @torch.inference_mode()
    def embed_images(self, pixel_batches: list[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
        """One forward pass over the given images, each either pixel values (a float32 tensor from
        `preprocess_images` / `normalise`) or 8-bit crops (from `prepare_images` / `prepare_crops`
        where the model normalises on its device); unit vectors out, in order."""
        if all(isinstance(p, np.ndarray) for p in pixel_batches):
            pixels = self._normalise_on_device(np.concatenate([p.reshape(-1, *p.shape[-3:]) for p in pixel_batches]))
        else:
            host = [self.normalise(p.reshape(-1, *p.shape[-3:])) if isinstance(p, np.ndarray) else p
                    for p in pixel_batches]
            pixels = self.runtime.to_device(torch.cat([p.reshape(-1, *p.shape[-3:]) for p in host]), self.dtype)
        return list(normalised(self.image_features(pixels)))

    def _normalise_on_device(self, crops: np.ndarray) -> torch.Tensor:
        """8-bit crops to pixel values on the model's device: one copy of uint8, then the normaliser's
        multiply and add (the same float32 operations in the same order as `Normaliser`)."""
        if self.normaliser is None:
            raise RuntimeError("this model's image processor takes no pre-cropped pixels")
        if self._device_affine is None:  # made once, on first use: two 3-value tensors on the device
            self._device_affine = tuple(torch.from_numpy(v).reshape(1, -1, 1, 1).to(self.device)
                                        for v in self.normaliser.affine)
        scale, shift = self._device_affine
        pixels = self.runtime.to_device(torch.from_numpy(np.ascontiguousarray(crops))).permute(0, 3, 1, 2).float()
        return pixels.mul_(scale).add_(shift).to(self.dtype).contiguous()


class ImageFeatures(torch.nn.Module):
    """Pixel values to an image model's features (CLIP and SigLIP alike): what the backends run."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


class Normaliser:
    """CLIPProcessor's rescale and normalise, (x * scale - mean) / std, as one float32 multiply-add
    per value (the processor computes it in float64 and rounds to float32: within 1e-6)."""

    def __init__(self, scale: float, mean, std):
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        self._a = (scale / std).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)

    @classmethod
    def from_processor(cls, processor) -> Normaliser:
        return cls(float(processor.rescale_factor), processor.image_mean, processor.image_std)

    @property
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel float32 (multiplier, addend)."""
        return self._a, self._b

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        pixels = crops.astype(np.float32) * self._a + self._b  # N, H, W, C
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
