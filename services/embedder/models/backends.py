"""Where the towers' forward passes run: torch, or ONNX Runtime, chosen once at start.

Each family hands its encoders over as small torch modules (pixels to features, tokens to features);
the backend decides how they run, and no family's code knows which:

- **torch** (`TorchEncoder`): the modules themselves, cast to the serving precision (or int8 through
  torch's dynamic quantization). The only backend on a GPU.
- **onnxruntime** (`OrtEncoder`): each module exported to ONNX once, at first start, with a batch
  (and token) axis free, and run by ONNX Runtime on the CPU. Its fused kernels make a query about
  2.5x faster than torch's op-by-op eager mode on 2 cores (services/embedder/README.md, "Backends").
  The graphs are cached beside the model, keyed by the weights' fingerprint and the exporter's
  version, with a manifest of their checksums; a partial or damaged cache is rebuilt with a log line,
  never used. `EMBEDDER_DTYPE=int8` quantizes the exported graph's MatMuls with ONNX Runtime's own
  dynamic quantization, and the cosine of its vectors against float32 on fixed inputs is measured at
  load and reported by `/v1/model`.

A tower whose graph cannot be exported, or a cache folder that cannot be written, falls back to torch
with one sentence in the log and in `/v1/model` (`backend_note`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# Bumped whenever the exported graphs would change for the same weights (the wrappers, the opset, the
# export options): caches of another version are rebuilt.
EXPORT_VERSION = "1"
OPSET = 17
BACKENDS = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str, dtype: str, amx: bool) -> str:
    """torch on a GPU; on the CPU ONNX Runtime, except where the CPU has AMX and the precision is left
    to auto (torch's bfloat16 there ran 4x float32) or a half precision is asked for (ONNX Runtime's
    CPU kernels are float32 and int8)."""
    if backend not in BACKENDS:
        raise ValueError(f"EMBEDDER_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}.")
    cuda = device.startswith("cuda")
    if backend == "onnxruntime":
        if cuda:
            raise ValueError("EMBEDDER_BACKEND=onnxruntime runs on the CPU; on a GPU use torch (or auto).")
        if dtype in ("float16", "bfloat16"):
            raise ValueError(f"EMBEDDER_BACKEND=onnxruntime computes in float32 or int8, not {dtype}; set "
                             "EMBEDDER_DTYPE to auto, float32 or int8, or EMBEDDER_BACKEND=torch.")
        if not onnxruntime_available():
            raise ValueError("EMBEDDER_BACKEND=onnxruntime, but the onnxruntime package is not installed.")
        return backend
    if backend == "torch" or cuda or dtype in ("float16", "bfloat16") or (dtype == "auto" and amx):
        return "torch"
    return "onnxruntime" if onnxruntime_available() else "torch"


class TorchEncoder:
    backend = "torch"

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.module(**inputs)


class OrtEncoder:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [item.name for item in self.session.get_inputs()]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: _numpy(inputs[name]) for name in self.input_names}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def _numpy(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return np.ascontiguousarray(array)


class Export:
    """One encoder to export: its module, example inputs (a batch of two), and the axes left free."""

    def __init__(self, module: torch.nn.Module, example: dict[str, torch.Tensor], free_axes: dict[str, dict]):
        self.module = module
        self.example = example
        self.free_axes = free_axes


def build_encoders(model: torch.nn.Module, build: Callable[[torch.nn.Module], dict[str, Export]], runtime,
                   folder: Path, fingerprint: str, family: str) -> dict[str, TorchEncoder | OrtEncoder]:
    """The family's encoders on the chosen backend. `build` makes the wrapper modules around `model`
    (called on the float32 model for an export, on the placed model for torch)."""
    if runtime.backend == "onnxruntime":
        exports = build(model)
        try:
            return OnnxCache(runtime, folder, fingerprint, family).encoders(exports)
        except FallBack as reason:
            runtime.note(f"{family}: {reason} Running on torch instead.")
    placed = runtime.place(model)
    return {name: TorchEncoder(export.module) for name, export in build(placed).items()}


class FallBack(Exception):
    """Why this tower runs on torch after all: a sentence for the log and /v1/model."""


class OnnxCache:
    def __init__(self, runtime, folder: Path, fingerprint: str, family: str):
        import onnxruntime

        self.runtime = runtime
        self.family = family
        base = Path(runtime.onnx_cache) if runtime.onnx_cache else folder / ".imagesearch-onnx"
        self.int8 = runtime.precision == "int8"
        # The precision is in the key: an int8 cache's `image.onnx` is the quantized graph.
        self.key = (f"{family}-{fingerprint}-{'int8' if self.int8 else 'float32'}-export{EXPORT_VERSION}"
                    f"-torch{torch.__version__.split('+')[0]}")
        self.folder = base / self.key
        self.ort_version = onnxruntime.__version__

    def encoders(self, exports: dict[str, Export]) -> dict[str, OrtEncoder]:
        files = self._valid_files(exports) or self._write(exports)
        threads = self.runtime.threads
        encoders = {name: OrtEncoder(files[name], threads) for name in exports}
        if self.int8:
            full = {name: OrtEncoder(files[f"{name}.float32"], threads) for name in exports}
            for name, export in exports.items():
                ours, reference = encoders[name](**export.example), full[name](**export.example)
                cosine = torch.nn.functional.cosine_similarity(ours.float(), reference.float(), dim=-1).min()
                self.runtime.int8_cosine[f"{self.family}.{name}"] = round(float(cosine), 5)
        return encoders

    def _valid_files(self, exports: dict[str, Export]) -> dict[str, Path] | None:
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            # Every file is checked, the graphs' external weights (`*.onnx.data`) too.
            for name, digest in manifest["files"].items():
                path = self.folder / name
                if _sha256(path) != digest:
                    raise ValueError(f"{path} does not match its checksum")
            files = _graphs(self.folder, manifest["files"])
            if not all(name in files and (not self.int8 or f"{name}.float32" in files) for name in exports):
                raise ValueError("it lacks a graph this start needs")
            return files
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the ONNX cache %s is damaged or partial (%s); exporting the graphs again", self.folder, exc)
            return None

    def _write(self, exports: dict[str, Export]) -> dict[str, Path]:
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{self.key}-", dir=self.folder.parent))
        except OSError as exc:
            raise FallBack(f"the ONNX cache folder {self.folder.parent} cannot be written ({exc.strerror or exc}); "
                           "set EMBEDDER_ONNX_CACHE to a writable folder.") from None
        started = time.perf_counter()
        try:
            for name, export in exports.items():
                target = scratch / (f"{name}.float32.onnx" if self.int8 else f"{name}.onnx")
                _export(export, target, scratch)
                if self.int8:
                    from onnxruntime.quantization import QuantType, quantize_dynamic

                    quantize_dynamic(str(target), str(scratch / f"{name}.onnx"), weight_type=QuantType.QInt8,
                                     use_external_data_format=_external(target))
            digests = {path.name: _sha256(path) for path in sorted(scratch.iterdir())}
            (scratch / "manifest.json").write_text(json.dumps(
                {"family": self.family, "exporter": EXPORT_VERSION, "torch": torch.__version__,
                 "onnxruntime": self.ort_version, "opset": OPSET, "files": digests}, indent=2))
            self._publish(scratch, exports)
        except FallBack:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise FallBack(f"the ONNX graphs could not be written to {self.folder} ({exc}).") from None
        log.info("exported the %s graphs to %s in %.1fs", self.family, self.folder, time.perf_counter() - started)
        # The folder now holds these files (ours, or another embedder's checked copy of the same): no
        # second pass over hundreds of megabytes to check what was just written.
        return _graphs(self.folder, digests)

    def _publish(self, scratch: Path, exports: dict[str, Export]) -> None:
        """Move the finished graphs into place in one rename. Two embedders starting on one model at
        once (tests, a scaled-out deployment) each export; the first rename wins and the other keeps
        the winner's graphs, which are the same."""
        try:
            os.replace(scratch, self.folder)
            return
        except OSError:
            pass
        if self._valid_files(exports) is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            return
        shutil.rmtree(self.folder, ignore_errors=True)  # a damaged cache: replaced by ours
        os.replace(scratch, self.folder)


def _graphs(folder: Path, names) -> dict[str, Path]:
    """The encoder graphs among a cache's file names, by encoder (`image`, `text.float32`, ...)."""
    return {name.removesuffix(".onnx"): folder / name for name in names if name.endswith(".onnx")}


def _export(export: Export, target: Path, folder: Path) -> None:
    names = list(export.example)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: it traces these plain forward passes in about a second where
            # the dynamo exporter took several, and needs no onnxscript.
            torch.onnx.export(export.module.eval(), tuple(export.example[name] for name in names), str(target),
                              input_names=names, output_names=["features"], dynamic_axes=export.free_axes,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter's failures are many; each says what it could not handle
        raise FallBack(f"the graph could not be exported to ONNX ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''}).") from None
    loose = [path for path in folder.iterdir() if path.suffix != ".onnx" and not path.name.endswith(".data")]
    if loose:
        # A graph over protobuf's 2 GiB (XLM-R Large) is written with one file per weight beside it;
        # gather them into one `<graph>.data`, so the cache is a few files with one checksum each.
        import onnx

        model = onnx.load(str(target), load_external_data=True)
        for path in loose:
            path.unlink()
        onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{target.name}.data", size_threshold=1024)


def _external(target: Path) -> bool:
    return (target.parent / f"{target.name}.data").exists()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
