"""What every family shares at run time: the device, the precision, threads, int8, fingerprints.

The families (`clip.py`, `siglip.py`, `st_multilingual.py`, `mclip.py`) call these helpers and never
choose a device or a precision themselves, so the runtime is decided once, at start, for every tower.

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
companions (within the same tolerance, tested).
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class TextResult:
    vector: np.ndarray
    truncated: bool


class Runtime:
    """Where and how every tower runs: chosen once by `Runtime.choose`, passed to each family, which
    hands its encoders to `backends.build_encoders` and never picks a device, precision or backend."""

    def __init__(self, device: str, dtype: torch.dtype, precision: str, backend: str = "torch", threads: int = 1,
                 onnx_cache: str = ""):
        self.device = device
        self.dtype = dtype
        # "int8" for a quantized model computing around float32, else the dtype's name.
        self.precision = precision
        self.backend = backend
        self.threads = threads
        self.onnx_cache = onnx_cache
        # Sentences for /v1/model: a tower that fell back to torch, and why.
        self.notes: list[str] = []
        # ONNX Runtime int8: each encoder's lowest cosine against its float32 graph on fixed inputs.
        self.int8_cosine: dict[str, float] = {}

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @classmethod
    def choose(cls, device: str = "auto", dtype: str = "auto", threads: int = 0, backend: str = "auto",
               onnx_cache: str = "") -> Runtime:
        from services.embedder.models.backends import resolve_backend

        threads = threads or available_cores()
        torch.set_num_threads(threads)
        device = resolve_device(device)
        amx = cpu_has_amx() if device == "cpu" else False
        backend = resolve_backend(backend, device, dtype, amx)
        torch_dtype = resolve_dtype(dtype, device, amx) if backend == "torch" else torch.float32
        precision = "int8" if dtype == "int8" else str(torch_dtype).removeprefix("torch.")
        return cls(device, torch_dtype, precision, backend, threads, onnx_cache)

    def note(self, sentence: str) -> None:
        log.warning("%s", sentence)
        self.notes.append(sentence)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """The float32 model on the device in the serving precision (int8: quantized, on the CPU)."""
        if self.precision == "int8":
            return quantize_int8(model)
        return model.to(self.device, dtype=self.dtype)

    def to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        if not self.cuda:
            return tensor if dtype is None else tensor.to(dtype)
        # Pinned host memory lets the copy run asynchronously; the one host sync per batch is the
        # final `.cpu()` of the vectors.
        return tensor.pin_memory().to(self.device, dtype=dtype, non_blocking=True)

    def info(self) -> dict:
        return {"backend": self.backend, "backend_note": " ".join(self.notes) or None,
                "int8_cosine": dict(self.int8_cosine) or None}


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


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every Linear layer dynamically quantized to int8 (per-channel weight scales),
    for the CPU. Call it on the float32 model after any weight folding. torch marks this API as
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


def fingerprint_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def fingerprint_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprint_folder(folder: Path, model: torch.nn.Module | None = None) -> str:
    """The weights' identity: a hash of the weight files in the folder and its module subfolders
    (a sentence-transformers Dense layer lives in `2_Dense/`), else of the float32 state."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if files:
        return fingerprint_files(files)
    if model is None:
        raise ValueError(f"{folder} holds no weight files")
    return fingerprint_state(model)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file as tensors (`.safetensors`, or a PyTorch pickle read with weights_only); a file
    that cannot be read is a CheckpointError naming it."""
    from services.embedder.models.checkpoint import CheckpointError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} could not be read as weights ({type(exc).__name__}: {exc}).") from None


def normalised(features: torch.Tensor) -> np.ndarray:
    """Unit vectors, normalised in float32: in half precision the norm itself loses digits."""
    features = features.float()
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy().astype(np.float32, copy=False)


def text_results(features: torch.Tensor, lengths: list[int], limit: int) -> list[TextResult]:
    """Unit vectors for a batch of texts, each flagged when its `length` in tokens passed `limit`."""
    return [TextResult(vector, length > limit) for vector, length in zip(normalised(features), lengths)]
