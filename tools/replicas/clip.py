"""A random-weight CLIP in the layout of openai/clip-vit-base-patch32.

`tiny` is a very small CLIP (loads in a fraction of a second, embeds fast on a CPU) for tests;
`b32` has the real ViT-B/32 shapes (projection dim 512), so benchmarks pay the real compute cost.
Both use the real ViT-B/32 tokenizer and processor files from `tools/clip_config/` and load through
the same `from_pretrained` path as a downloaded checkpoint.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tools.replicas import SEED, check_size, marker_text, write_marker

log = logging.getLogger(__name__)

CLIP_CONFIG_DIR = Path(__file__).resolve().parents[1] / "clip_config"
MARKER_TEXT = marker_text("CLIP model")
# Tokenizer and processor files copied verbatim (the model config is written by save_pretrained).
_PROCESSOR_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
)
TINY_IMAGE_SIZE = 64


def _config(size: str):
    from transformers import CLIPConfig

    base = CLIPConfig.from_pretrained(CLIP_CONFIG_DIR)
    if size == "b32":
        return base
    text = base.text_config.to_dict()
    vision = base.vision_config.to_dict()
    # Small enough to load and run in milliseconds on a CPU, but still a real CLIP: the text side
    # keeps the real vocabulary and 77 positions so the real tokenizer works unchanged.
    text.update(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                projection_dim=64)
    vision.update(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                  image_size=TINY_IMAGE_SIZE, patch_size=16, projection_dim=64)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64,
                      logit_scale_init_value=base.logit_scale_init_value)


def write_random_clip(folder: str | Path, size: str = "tiny") -> Path:
    """Write a random-weight CLIPModel plus tokenizer/processor files and the marker; return the folder."""
    check_size(size)
    import torch
    from transformers import CLIPModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config = _config(size)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)

    for name in _PROCESSOR_FILES:
        shutil.copyfile(CLIP_CONFIG_DIR / name, folder / name)
    if size == "tiny":
        # The processor must produce pixels of the size the tiny vision tower expects.
        path = folder / "preprocessor_config.json"
        preprocessor = json.loads(path.read_text())
        preprocessor["size"] = {"shortest_edge": TINY_IMAGE_SIZE}
        preprocessor["crop_size"] = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
        path.write_text(json.dumps(preprocessor, indent=2) + "\n")
    write_marker(folder, "CLIP model")
    log.info("wrote a random-weight CLIP (%s) to %s", size, folder)
    return folder
