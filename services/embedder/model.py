"""The CLIP model behind the embedder: loading, preprocessing and forward passes.

The only module of the service that imports torch and transformers. `ClipModel.embed_texts` and
`ClipModel.embed_images` run a whole micro-batch in one forward pass; the batcher calls them from a
single worker thread, so the tokenizer (not thread-safe) and the model are used by one thread at a
time. `prepare_images` is thread-safe and runs in the decoding pool.

Precision: "auto" is float16 on CUDA; on the CPU it is bfloat16 only where the CPU has AMX tiles
(`amx_bf16`), else float32. Measured with the ViT-B/32 shapes at batch 32 on 2 cores: on an AMX Xeon
bf16 ran about 4x faster than fp32 (157 vs 37 images/s, SiLU fold included); on an AMD EPYC without
AMX bf16 ran about 6x slower (1 vs 6.5 images/s), because torch then emulates it. bf16 vectors agree
with fp32 to a cosine similarity of at least 0.999 (tested).

"int8" (CPU only, never chosen by "auto") quantizes every Linear layer's weights to int8, one
scale per output channel, and each batch's activations on the fly (torch's dynamic quantization);
the rest stays float32. On the AVX2-only EPYC it ran 1.7x float32 (17 vs 10 images/s at batch 32),
with cosine similarity to the float32 vectors of 0.9996 on random ViT-B/32 weights. An activation's
scale is computed per layer input, so over the whole batch: a vector depends slightly on its batch
companions (within the same tolerance, tested). Quantization can move a real checkpoint's vectors
more than random weights show, so it is a setting to choose knowingly.

Loading: in float32, then the fingerprint (of the weight files, or of the float32 state), then
`fold_quick_gelu`, then the cast to the serving precision and one warm-up pass. `ClipModel` does all
its torch work on the thread that calls it; the service keeps that one thread (see batcher.py).

Fast preprocessing (`fast_preprocess`, on by default) does CLIPProcessor's resize and crop with the
same Pillow calls but skips its numpy round trips; for pictures more elongated than 4:1 it resizes
only the part the crop keeps (Pillow's `box`), so a 50000x1 picture costs no more than a square one
instead of gigabytes. Pixels are identical up to 4:1 and within one 8-bit level beyond; vectors
match CLIPProcessor within 1e-4 (tested). Checkpoints whose processor config it does not recognise
fall back to the processor itself.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from services.common.images import ClipCrop

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_QUICK_GELU = 1.702  # quick_gelu(x) = x * sigmoid(1.702 x)
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


def cpu_has_amx(cpuinfo: str | None = None, capability: str | None = None) -> bool:
    """Whether the CPU has AMX bf16 tiles, the only CPUs where bf16 beats fp32 (see the module doc).

    Reads the `amx_bf16` flag of /proc/cpuinfo and torch's own CPU capability ("AMX" in it, as on
    builds that report e.g. "AVX512_AMX"); the arguments replace both, for tests."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    if capability is None:
        try:
            capability = str(torch.backends.cpu.get_cpu_capability())
        except Exception:  # an old torch or an odd platform: rely on cpuinfo alone
            capability = ""
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split()}
    return "amx_bf16" in flags or "AMX" in capability.upper()


def resolve_dtype(dtype: str, device: str, amx: bool | None = None) -> torch.dtype:
    """The dtype of the model's inputs and of the layers not quantized ("int8" computes in float32
    around its int8 matrix multiplications)."""
    if dtype == "int8":
        if device != "cpu":
            raise ValueError(f"EMBEDDER_DTYPE=int8 runs on the CPU only; on {device} use float16 or bfloat16.")
        return torch.float32
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.float16
        # bf16 on a CPU pays only with AMX; elsewhere it is emulated and several times slower.
        return torch.bfloat16 if (cpu_has_amx() if amx is None else amx) else torch.float32
    return _DTYPES[dtype]


def fold_quick_gelu(model: torch.nn.Module) -> int:
    """Rewrite every quick_gelu MLP as SiLU with the 1.702 scale folded into its weights.

    quick_gelu(h) = h * sigmoid(1.702 h) takes three passes over the MLP's widest tensor (multiply,
    sigmoid, multiply). With h' = 1.702 h, quick_gelu(h) = silu(h') / 1.702, so scaling fc1 by 1.702
    and fc2's weights by 1 / 1.702 leaves the function unchanged and needs one in-place SiLU pass.
    The same maths, rounded differently: within 2e-7 of the original in float32. Measured with the
    ViT-B/32 shapes on a 2-core AMX CPU: 1.25x in float32 (30 -> 37 images/s), 1.1x to 1.9x in
    bfloat16 at batches of 32 to 64 (140 -> 157, 85 -> 164 images/s), where the three passes over a
    tensor larger than the cache dominated. Call it on the float32 model, before any cast. Returns
    how many MLPs were rewritten (OpenAI's CLIP checkpoints use quick_gelu; others keep theirs).
    """
    folded = 0
    for module in model.modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        config = getattr(module, "config", None)
        if not (isinstance(fc1, torch.nn.Linear) and isinstance(fc2, torch.nn.Linear)
                and getattr(config, "hidden_act", None) == "quick_gelu"):
            continue
        with torch.no_grad():
            fc1.weight.mul_(_QUICK_GELU)
            if fc1.bias is not None:
                fc1.bias.mul_(_QUICK_GELU)
            fc2.weight.div_(_QUICK_GELU)
        module.activation_fn = _InplaceSiLU()
        folded += 1
    return folded


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every Linear layer dynamically quantized to int8 (per-channel weight scales),
    for the CPU. Call it on the float32 model after `fold_quick_gelu`. torch marks this API as
    deprecated in favour of torchao; its warnings are silenced here, and a torch without it gets a
    message naming the settings that still work."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as error:
        raise RuntimeError("This torch has no dynamic int8 quantization (torch.ao.quantization); "
                           "set EMBEDDER_DTYPE to auto, float32 or bfloat16.") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class _InplaceSiLU(torch.nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(hidden, inplace=True)


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
                 dtype: torch.dtype, fingerprint: str, random_weights: bool, fast_preprocess: bool = True,
                 precision: str | None = None):
        self.name = name
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.device = device
        self.dtype = dtype
        # What /v1/model reports: the dtype, or "int8" for a quantized model computing around float32.
        self.precision = precision or str(dtype).removeprefix("torch.")
        self.fingerprint = fingerprint
        self.random_weights = random_weights
        self.dim = int(model.config.projection_dim)
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.image_size = int(model.config.vision_config.image_size)
        self._cuda = str(device).startswith("cuda")
        # The crop and the normalisation, when the processor follows CLIP's usual recipe: the fast
        # path (unless turned off) and pre-cropped pixel input both rest on them.
        self.crop = ClipCrop.from_processor(self.image_processor)
        self.normaliser = Normaliser.from_processor(self.image_processor) if self.crop else None
        if self.crop is None:
            log.info("the image processor's settings are not CLIP's usual recipe; using it as it is")
        self._fast = self.crop is not None and fast_preprocess
        # On CUDA the batch goes to the device as 8-bit crops and is normalised there: a quarter of
        # the bytes to copy, and no float work on the host (which would otherwise be the limit at
        # thousands of images/s). On the CPU the decoding pool normalises, beside the model thread.
        self.normalise_on_device = self._cuda and self.normaliser is not None
        self._device_affine: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def load(cls, name: str, device: str = "auto", dtype: str = "auto", threads: int = 0,
             fast_preprocess: bool = True) -> ClipModel:
        started = time.perf_counter()
        torch.set_num_threads(threads or available_cores())
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        folder = Path(name)
        local = folder.is_dir()
        # SDPA: fused (flash / memory-efficient) attention kernels on CUDA; on the CPU it is the
        # same maths as the eager path, so the reference test holds either way. Loaded in float32:
        # the fingerprint and the activation rewrite below are done on the checkpoint's own values,
        # and only then is the model cast.
        model = CLIPModel.from_pretrained(name, dtype=torch.float32, attn_implementation="sdpa").eval()
        processor = CLIPProcessor.from_pretrained(name)
        weights = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES) if local else []
        # The same weights give the same fingerprint whatever the device and precision.
        fingerprint = _fingerprint_files(weights) if weights else _fingerprint_state(model)
        fold_quick_gelu(model)
        model = quantize_int8(model) if dtype == "int8" else model.to(device, dtype=torch_dtype)
        random_weights = local and (folder / RANDOM_WEIGHTS_MARKER).exists()
        precision = "int8" if dtype == "int8" else None
        loaded = cls(name, model, processor, device, torch_dtype, fingerprint, random_weights,
                     fast_preprocess=fast_preprocess, precision=precision)
        loaded.warm_up()
        log.info("loaded %s on %s (%s, dim %d, fingerprint %s%s) in %.1fs", name, device,
                 loaded.precision, loaded.dim, fingerprint,
                 ", RANDOM WEIGHTS: results are meaningless" if random_weights else "",
                 time.perf_counter() - started)
        return loaded

    def warm_up(self) -> None:
        """One image and one text through the model, so that the first request does not pay for the
        kernels built on first use (oneDNN's for each new shape on the CPU, cuBLAS's on CUDA)."""
        started = time.perf_counter()
        blank = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
        self.embed_images([self.prepare_images([blank])])
        self.embed_texts(["a photo"])
        log.info("warmed up in %.2fs", time.perf_counter() - started)

    def info(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "device": self.device,
            "dtype": self.precision,
            "fingerprint": self.fingerprint,
            "random_weights": self.random_weights,
            "image_size": self.image_size,
            "max_text_tokens": self.max_tokens,
            "fast_preprocess": self._fast,
            # How to crop for POST /v1/embed/pixels (uint8, crop_height x crop_width x 3); None: no
            # pixel input for this processor.
            "pixel_input": self.crop.as_dict() if self.crop else None,
        }

    # -- images ---------------------------------------------------------------------------------

    def prepare_images(self, images: list) -> torch.Tensor | np.ndarray:
        """What the service queues for `embed_images`: the normalised pixels, or, where the model
        normalises on its device, the 8-bit crops (N x H x W x 3). Thread-safe."""
        if self._fast and self.normalise_on_device:
            return np.stack([self.crop(image) for image in images])
        return self.preprocess_images(images)

    def prepare_crops(self, crops: np.ndarray) -> torch.Tensor | np.ndarray:
        """The same for crops that are already cut (`/v1/embed/pixels`). Thread-safe."""
        return crops if self.normalise_on_device else self.normalise(crops)

    def preprocess_images(self, images: list) -> torch.Tensor:
        """Resize, crop and normalise RGB PIL images into pixel values (CPU, float32). Thread-safe."""
        if self._fast:
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
            pixels = self._to_device(torch.cat([p.reshape(-1, *p.shape[-3:]) for p in host]), self.dtype)
        features = self.model.get_image_features(pixel_values=pixels).pooler_output
        return list(self._normalised(features))

    def _normalise_on_device(self, crops: np.ndarray) -> torch.Tensor:
        """8-bit crops to pixel values on the model's device: one copy of uint8, then the normaliser's
        multiply and add (the same float32 operations in the same order as `Normaliser`)."""
        if self.normaliser is None:
            raise RuntimeError("this model's image processor takes no pre-cropped pixels")
        if self._device_affine is None:  # made once, on first use: two 3-value tensors on the device
            self._device_affine = tuple(torch.from_numpy(v).reshape(1, -1, 1, 1).to(self.device)
                                        for v in self.normaliser.affine)
        scale, shift = self._device_affine
        pixels = self._to_device(torch.from_numpy(np.ascontiguousarray(crops))).permute(0, 3, 1, 2).float()
        return pixels.mul_(scale).add_(shift).to(self.dtype).contiguous()

    def _to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        if not self._cuda:
            return tensor if dtype is None else tensor.to(dtype)
        # Pinned host memory lets the copy run asynchronously; the one host sync per batch is the
        # final `.cpu()` of the vectors.
        return tensor.pin_memory().to(self.device, dtype=dtype, non_blocking=True)

    # -- texts ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        """One forward pass over the texts; each longer than the model's context is truncated."""
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: self._to_device(value) for key, value in tokens.items()}
        features = self.model.get_text_features(**tokens).pooler_output
        vectors = self._normalised(features)
        return [TextResult(vector, length > self.max_tokens) for vector, length in zip(vectors, lengths)]

    @staticmethod
    def _normalised(features: torch.Tensor) -> np.ndarray:
        # Normalise in float32: in half precision the norm itself loses digits.
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)


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
