"""Every model family the embedder serves, loaded from its random-weight replica (the real checkpoint
layout, tools/random_model.py) and compared with the family's reference library on the same folder:
transformers' own model and processor for CLIP, SigLIP and SigLIP 2; sentence-transformers for its
folders; the `multilingual-clip` package for M-CLIP. Equal means cosine >= 0.9999 for every text
(Spanish and English, short and past the tower's token limit) and every image, on both backends
(torch, and the ONNX graphs exported from it).

Then what a user or operator meets: a text tower of another teacher or dimension, an unknown family,
a folder missing a file, a text tower named as the image model: the load refuses with a sentence.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.embedder.models import CheckpointError, load_towers
from tools.random_model import write_random_model

MIN_COSINE = 0.9999
LONG_SPANISH = "una casa blanca con un jardín muy grande y flores rojas junto al mar " * 60
TEXTS = ["un perro corriendo en la playa", "a dog running on the beach", "Atardecer en la montaña", "cat",
         LONG_SPANISH, "a red car parked in front of an old house " * 60]


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def cosines(ours, reference) -> np.ndarray:
    return np.sum(unit(ours) * unit(reference), axis=-1)


def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    sizes = [(200, 150), (150, 200), (64, 64), (333, 97)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replicas")
    folders = {family: write_random_model(root / family, family=family, size="tiny")
               for family in ("clip", "siglip", "siglip2")}
    for family in ("st-multilingual", "mclip"):
        folders[family] = write_random_model(root / family, family=family, size="tiny", aligned_to=folders["clip"])
    return folders


BACKENDS = ["torch", "onnxruntime"]


def ours(folder: Path, text_model: str = "same", backend: str = "auto"):
    return load_towers(str(folder), text_model, device="cpu", dtype="float32", backend=backend)


def test_each_family_is_read_from_its_own_files(replicas):
    for family in ("clip", "siglip", "siglip2"):
        info = ours(replicas[family]).info()
        assert info["family"] == family and info["text_family"] == family and info["random_weights"] is True
    info = ours(replicas["clip"], str(replicas["st-multilingual"])).info()
    assert (info["family"], info["text_family"], info["text_model"]) == \
        ("clip", "st-multilingual", str(replicas["st-multilingual"]))
    assert "es" in info["languages"] and "en" in info["languages"] and info["max_text_tokens"] == 128
    assert ours(replicas["clip"]).info()["languages"] == ["en"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_equals_transformers(replicas, backend):
    from transformers import CLIPModel, CLIPProcessor

    folder = replicas["clip"]
    reference, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    towers = ours(folder, backend=backend)
    assert towers.info()["backend"] == backend
    with torch.inference_mode():
        tokens = processor(text=TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
        expected_texts = reference.get_text_features(**tokens).pooler_output
        expected_images = reference.get_image_features(**processor(images=pictures(), return_tensors="pt")).pooler_output
    check(towers, expected_texts, expected_images, limit_flags=[False, False, False, False, True, True])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_siglip_families_equal_transformers(replicas, family, backend):
    from transformers import AutoModel, AutoProcessor

    folder = replicas[family]
    reference, processor = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    towers = ours(folder, backend=backend)
    assert towers.info()["backend"] == backend
    # As the model cards say: padded to max_length 64; SigLIP 2's text lowercased by the caller.
    texts = [text.lower() for text in TEXTS] if family == "siglip2" else TEXTS
    with torch.inference_mode():
        tokens = processor(text=texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        expected_texts = reference.get_text_features(**tokens).pooler_output
        expected_images = reference.get_image_features(**processor(images=pictures(), return_tensors="pt")).pooler_output
    assert towers.max_tokens == 64
    check(towers, expected_texts, expected_images, limit_flags=[False, False, False, False, True, True])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sentence_transformers_folder_equals_sentence_transformers(replicas, backend):
    from sentence_transformers import SentenceTransformer

    folder = replicas["st-multilingual"]
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    towers = ours(replicas["clip"], str(folder), backend=backend)
    assert towers.info()["backend"] == backend
    results = towers.embed_texts(TEXTS)
    assert cosines([r.vector for r in results], expected).min() >= MIN_COSINE
    assert [r.truncated for r in results] == [False, False, False, False, True, True]
    # Image queries and ingestion keep the image model: its vectors are the CLIP replica's own.
    alone = ours(replicas["clip"])
    batch = [towers.prepare_images(pictures())]
    assert cosines(towers.embed_images(batch), alone.embed_images(batch)).min() >= 0.999999


@pytest.mark.parametrize("backend", BACKENDS)
def test_mclip_equals_the_multilingual_clip_package(replicas, backend):
    from multilingual_clip.Config_MCLIP import MCLIPConfig
    from multilingual_clip.pt_multilingual_clip import MultilingualCLIP
    from transformers import AutoTokenizer

    folder = replicas["mclip"]
    # The package's own classes and forward; its weights loaded as its from_pretrained would.
    reference = MultilingualCLIP(MCLIPConfig.from_pretrained(folder)).eval()
    reference.load_state_dict(torch.load(folder / "pytorch_model.bin", weights_only=True))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    towers = ours(replicas["clip"], str(folder), backend=backend)
    assert towers.info()["backend"] == backend
    limit = towers.max_tokens

    def truncating(texts, **options):  # the package does not truncate; past the limit it cannot run at all
        return tokenizer(texts, truncation=True, max_length=limit, **options)

    with torch.inference_mode():
        expected = reference.forward(TEXTS, truncating)
    results = towers.embed_texts(TEXTS)
    assert cosines([r.vector for r in results], expected).min() >= MIN_COSINE
    assert results[4].truncated and not results[0].truncated
    with torch.inference_mode():  # short texts: the package's forward exactly as published
        short = reference.forward(TEXTS[:4], tokenizer)
    assert cosines([r.vector for r in results[:4]], short).min() >= MIN_COSINE


def check(towers, expected_texts, expected_images, limit_flags):
    results = towers.embed_texts(TEXTS)
    assert cosines([r.vector for r in results], expected_texts.numpy()).min() >= MIN_COSINE
    assert [r.truncated for r in results] == limit_flags
    vectors = towers.embed_images([towers.prepare_images(pictures())])
    assert cosines(vectors, expected_images.numpy()).min() >= MIN_COSINE


# -- refusals -------------------------------------------------------------------------------------


def test_a_text_tower_of_another_teacher_is_refused_with_both_names(replicas, tmp_path):
    other = write_random_model(tmp_path / "st", family="st-multilingual", size="tiny")  # teacher: OpenAI's B/32
    with pytest.raises(CheckpointError, match=r"distilled from openai/clip-vit-base-patch32, not from the image "
                                              r"model .*clip"):
        ours(replicas["clip"], str(other))


def test_a_text_tower_of_another_dimension_is_refused_with_both_dimensions(replicas):
    # SigLIP's tiny replica has another dimension; the teacher is declared by hand to reach that check.
    with pytest.raises(CheckpointError, match=r"gives 64-dimensional vectors, but the image model .* gives "
                                              r"\d+-dimensional ones"):
        load_towers(str(replicas["siglip"]), str(replicas["st-multilingual"]), device="cpu", dtype="float32",
                    text_teacher=str(replicas["siglip"]))


def test_a_tower_without_a_teacher_asks_for_one(replicas, tmp_path):
    folder = shutil.copytree(replicas["st-multilingual"], tmp_path / "own-tower")
    (folder / "RANDOM_WEIGHTS").unlink()
    with pytest.raises(CheckpointError, match="declares no teacher.*EMBEDDER_TEXT_TEACHER="):
        ours(replicas["clip"], str(folder))
    # Declared by the operator, it is served.
    towers = load_towers(str(replicas["clip"]), str(folder), device="cpu", dtype="float32",
                         text_teacher=str(replicas["clip"]))
    assert towers.info()["text_family"] == "st-multilingual" and towers.info()["random_weights"] is True


def test_an_unknown_family_and_missing_files_are_named(replicas, tmp_path):
    unknown = shutil.copytree(replicas["clip"], tmp_path / "bert")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match=r"model type 'bert'.*CLIP, SigLIP, SigLIP 2"):
        ours(unknown)
    no_config = shutil.copytree(replicas["clip"], tmp_path / "no-config")
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no-config/config.json is missing"):
        ours(no_config)
    no_dense = shutil.copytree(replicas["st-multilingual"], tmp_path / "no-dense")
    for weights in (no_dense / "2_Dense").glob("*"):
        if weights.name != "config.json":
            weights.unlink()
    with pytest.raises(CheckpointError, match=r"2_Dense has no model.safetensors or pytorch_model.bin"):
        ours(replicas["clip"], str(no_dense))
    no_weights = shutil.copytree(replicas["mclip"], tmp_path / "no-weights")
    (no_weights / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match=r"no-weights has no pytorch_model.bin or model.safetensors"):
        ours(replicas["clip"], str(no_weights))
    with pytest.raises(CheckpointError, match="does not exist"):
        ours(tmp_path / "nowhere")


def test_a_text_tower_named_as_the_image_model_says_how_to_set_both(replicas):
    with pytest.raises(CheckpointError, match="is a st-multilingual text tower, not an image model.*EMBEDDER_TEXT_MODEL="):
        ours(replicas["st-multilingual"])
