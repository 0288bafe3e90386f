"""The ONNX Runtime backend (services/embedder/models/backends.py): graphs exported once and cached
beside the model; a damaged cache rebuilt, never used; a tower that cannot be exported, or a cache
folder that cannot be written, served by torch with a sentence in /v1/model; int8 reported with its
measured cosine against float32; settings that cannot run refused with a sentence."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from services.embedder.models import CheckpointError, load_towers
from services.embedder.models.backends import resolve_backend
from tools.random_model import write_random_model

TEXTS = ["un perro en la playa", "a red car", "montañas nevadas al amanecer"]


@pytest.fixture
def clip_dir(tmp_path):
    # A folder of its own per test: each test owns its cache.
    return write_random_model(tmp_path / "clip", family="clip", size="tiny")


def load(folder, **options):
    return load_towers(str(folder), "same", device="cpu", **{"dtype": "float32", **options})


def vectors(towers) -> np.ndarray:
    return np.stack([r.vector for r in towers.embed_texts(TEXTS)])


def cache_folders(folder):
    return sorted(p for p in (folder / ".imagesearch-onnx").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_graphs_are_exported_once_then_reused(clip_dir, caplog):
    with caplog.at_level(logging.INFO, logger="services.embedder.models.backends"):
        first = load(clip_dir, backend="onnxruntime")
    assert "exported the clip graphs" in caplog.text
    [cache] = cache_folders(clip_dir)
    assert {p.name for p in cache.iterdir()} == {"image.onnx", "text.onnx", "manifest.json"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="services.embedder.models.backends"):
        again = load(clip_dir, backend="onnxruntime")
    assert "exported" not in caplog.text
    np.testing.assert_allclose(vectors(again), vectors(first), atol=1e-6)
    # A separate text tower: the image model's own text graph is not exported at all.
    text_tower = write_random_model(clip_dir.parent / "st", family="st-multilingual", size="tiny", aligned_to=clip_dir)
    shutil.rmtree(clip_dir / ".imagesearch-onnx")
    load_towers(str(clip_dir), str(text_tower), device="cpu", dtype="float32", backend="onnxruntime")
    [cache] = cache_folders(clip_dir)
    assert {p.name for p in cache.iterdir()} == {"image.onnx", "manifest.json"}


def test_a_damaged_or_partial_cache_is_rebuilt_with_a_log_line(clip_dir, caplog):
    reference = vectors(load(clip_dir, backend="torch"))
    load(clip_dir, backend="onnxruntime")
    [cache] = cache_folders(clip_dir)
    graph = cache / "text.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # cut short, as by a killed start
    with caplog.at_level(logging.WARNING, logger="services.embedder.models.backends"):
        rebuilt = load(clip_dir, backend="onnxruntime")
    assert "damaged or partial" in caplog.text and "text.onnx does not match its checksum" in caplog.text
    np.testing.assert_allclose(vectors(rebuilt), reference, atol=1e-5)
    (cache_folders(clip_dir)[0] / "manifest.json").unlink()  # no manifest: never trusted
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="services.embedder.models.backends"):
        load(clip_dir, backend="onnxruntime")
    assert "exported the clip graphs" in caplog.text


def test_a_model_the_exporter_cannot_handle_runs_on_torch_with_a_sentence(clip_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::something' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    towers = load(clip_dir, backend="onnxruntime")
    info = towers.info()
    assert "could not be exported to ONNX" in info["backend_note"] and "Running on torch instead" in info["backend_note"]
    np.testing.assert_allclose(vectors(towers), vectors(load(clip_dir, backend="torch")), atol=1e-6)


def test_a_cache_folder_without_write_access_runs_on_torch_with_a_sentence(clip_dir, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    towers = load(clip_dir, backend="onnxruntime", onnx_cache=str(blocked / "onnx"))
    note = towers.info()["backend_note"]
    assert "cannot be written" in note and "EMBEDDER_ONNX_CACHE" in note
    np.testing.assert_allclose(vectors(towers), vectors(load(clip_dir, backend="torch")), atol=1e-6)


def test_int8_on_onnx_runtime_reports_its_measured_cosine(clip_dir):
    full = load(clip_dir, backend="onnxruntime")
    quantized = load(clip_dir, backend="onnxruntime", dtype="int8")
    info = quantized.info()
    assert info["dtype"] == "int8" and info["backend"] == "onnxruntime"
    assert set(info["int8_cosine"]) == {"clip.image", "clip.text"}
    assert all(0.99 <= value <= 1.0 for value in info["int8_cosine"].values())
    got, expected = vectors(quantized), vectors(full)
    assert np.sum(got * expected, axis=1).min() >= 0.99
    assert not np.allclose(got, expected, atol=1e-6)  # really quantized
    assert full.info()["int8_cosine"] is None
    # Each precision keeps its own graphs: float32 after int8 is float32 again.
    np.testing.assert_allclose(vectors(load(clip_dir, backend="onnxruntime")), expected, atol=1e-6)
    assert len(cache_folders(clip_dir)) == 2


def test_the_backend_is_chosen_once_from_device_precision_and_cpu():
    assert resolve_backend("auto", "cpu", "auto", amx=False) == "onnxruntime"
    assert resolve_backend("auto", "cpu", "int8", amx=False) == "onnxruntime"
    assert resolve_backend("auto", "cpu", "auto", amx=True) == "torch"  # bf16 on AMX ran 4x fp32
    assert resolve_backend("auto", "cuda", "auto", amx=False) == "torch"
    assert resolve_backend("auto", "cpu", "bfloat16", amx=False) == "torch"
    assert resolve_backend("torch", "cpu", "float32", amx=False) == "torch"


def test_settings_the_backend_cannot_run_are_refused_with_a_sentence(clip_dir):
    with pytest.raises(CheckpointError, match="computes in float32 or int8, not bfloat16"):
        load(clip_dir, backend="onnxruntime", dtype="bfloat16")
    with pytest.raises(ValueError, match="runs on the CPU; on a GPU use torch"):
        resolve_backend("onnxruntime", "cuda", "auto", amx=False)
    with pytest.raises(ValueError, match="must be one of auto, torch, onnxruntime"):
        resolve_backend("tensorrt", "cpu", "auto", amx=False)
