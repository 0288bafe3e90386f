"""SigLIP and SigLIP 2 (FixRes checkpoints such as `google/siglip2-base-patch16-224`): both towers
of one `SiglipModel`, through transformers' own model and processor classes.

As they were trained: texts are padded to `max_length` (64 tokens) and truncated there, and the
text tower pools the last position, so padding to the batch's longest would change the vectors.
SigLIP 2's model card asks for lowercased text (its Gemma tokenizer does not lowercase); SigLIP's
own tokenizer lowercases by itself. Images are resized to the model's square (no crop), so the
processor runs as it is and there is no pre-cropped pixel input.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoProcessor, SiglipModel

from services.embedder.models.checkpoint import random_weights, read_json
from services.embedder.models.runtime import Runtime, TextResult, fingerprint_folder, text_results
from services.embedder.models.text import TextTower
from services.embedder.models.vision import VisionTower


class SiglipTowers(VisionTower, TextTower):
    family = "siglip"
    lowercase = False

    def __init__(self, name: str, model: SiglipModel, processor, runtime: Runtime, fingerprint: str,
                 random: bool, fast_preprocess: bool = True):
        text_config, vision_config = model.config.text_config, model.config.vision_config
        # SigLIP's features are the towers' pooled outputs: the text tower's hidden size.
        dim = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
        VisionTower.__init__(self, name, model, processor.image_processor, runtime, fingerprint, random, dim,
                             int(vision_config.image_size), fast_preprocess)
        TextTower.__init__(self, name, runtime, fingerprint, random, dim, int(text_config.max_position_embeddings))
        self.processor = processor
        self.tokenizer = processor.tokenizer

    @classmethod
    def load(cls, name: str, folder: Path, runtime: Runtime, fast_preprocess: bool = True) -> SiglipTowers:
        read_json(folder, "config.json", cls.family)
        read_json(folder, "preprocessor_config.json", cls.family)
        model = SiglipModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
        processor = AutoProcessor.from_pretrained(folder)
        fingerprint = fingerprint_folder(folder, model)
        return cls(name, runtime.place(model), processor, runtime, fingerprint, random_weights(folder),
                   fast_preprocess)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixels).pooler_output

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        if self.lowercase:
            texts = [text.lower() for text in texts]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: self.runtime.to_device(value) for key, value in tokens.items()}
        return text_results(self.model.get_text_features(**tokens).pooler_output, lengths, self.max_tokens)


class Siglip2Towers(SiglipTowers):
    family = "siglip2"
    lowercase = True
