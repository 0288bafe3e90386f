"""tools/random_model.py: a random-weight CLIP that loads like a real checkpoint and says what it is."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from tools.random_model import MARKER_NAME, _config, main, write_random_clip


def test_tiny_model_loads_through_from_pretrained_and_is_marked(tiny_model_dir):
    assert "meaningless" in (tiny_model_dir / MARKER_NAME).read_text()
    assert (tiny_model_dir / "model.safetensors").exists()
    model = CLIPModel.from_pretrained(tiny_model_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_model_dir)
    size = model.config.vision_config.image_size
    assert json.loads((tiny_model_dir / "preprocessor_config.json").read_text())["crop_size"]["height"] == size
    from PIL import Image

    pixels = processor(images=[Image.new("RGB", (300, 200), "red")], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, size, size)
    with torch.inference_mode():
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(**processor(text=["a red square"], return_tensors="pt")).pooler_output
    assert image.shape == text.shape == (1, model.config.projection_dim)


def test_same_seed_same_weights(tmp_path, tiny_model_dir):
    again = write_random_clip(tmp_path / "again", size="tiny")
    first = CLIPModel.from_pretrained(tiny_model_dir).state_dict()
    second = CLIPModel.from_pretrained(again).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_b32_has_the_real_vit_b32_shapes():
    config = _config("b32")
    assert config.projection_dim == 512
    assert config.vision_config.hidden_size == 768 and config.vision_config.patch_size == 32
    assert config.vision_config.image_size == 224 and config.text_config.max_position_embeddings == 77


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tiny, b32"):
        write_random_clip(tmp_path, size="huge")


def test_cli_writes_a_model_and_says_it_is_meaningless(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--size", "tiny"]) == 0
    assert "meaningless" in capsys.readouterr().out
    assert (tmp_path / "cli" / MARKER_NAME).exists()
