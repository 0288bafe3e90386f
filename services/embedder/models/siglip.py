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

from services.embedder.models.backends import Export, build_encoders
from services.embedder.models.checkpoint import random_weights, read_json
from services.embedder.models.runtime import Runtime, TextResult, fingerprint_folder, text_results
from services.embedder.models.text import TextTower
from services.embedder.models.vision import ImageFeatures, VisionTower


class SiglipTowers(VisionTower, TextTower):
    family = "siglip"
    lowercase = False
    padded_to_max = True

    def __init__(self, name: str, config, encoders: dict, processor, runtime: Runtime, fingerprint: str,
                 random: bool, fast_preprocess: bool = True, use_mask: bool = False):
        text_config, vision_config = config.text_config, config.vision_config
        # SigLIP's features are the towers' pooled outputs: the text tower's hidden size.
        dim = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
        VisionTower.__init__(self, name, encoders["image"], processor.image_processor, runtime, fingerprint, random,
                             dim, int(vision_config.image_size), fast_preprocess)
        TextTower.__init__(self, name, runtime, fingerprint, random, dim, int(text_config.max_position_embeddings))
        self.text_encoder = encoders.get("text")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.use_mask = use_mask

    @classmethod
    def load(cls, name: str, folder: Path, runtime: Runtime, fast_preprocess: bool = True,
             own_text: bool = True) -> SiglipTowers:
        read_json(folder, "config.json", cls.family)
        read_json(folder, "preprocessor_config.json", cls.family)
        model = SiglipModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
        processor = AutoProcessor.from_pretrained(folder)
        fingerprint = fingerprint_folder(folder, model)
        # SigLIP's own tokenizer returns no attention mask (the model was trained on padded text
        # without one); a tokenizer that returns one has it passed on, as the reference does.
        use_mask = "attention_mask" in processor.tokenizer.model_input_names
        inputs = ("input_ids", "attention_mask") if use_mask else ("input_ids",)
        length = int(model.config.text_config.max_position_embeddings)
        example = processor.tokenizer(["a photo of a dog", "una foto"], padding="max_length", max_length=length,
                                      truncation=True, return_tensors="pt")
        side = int(model.config.vision_config.image_size)

        def exports(placed: SiglipModel) -> dict[str, Export]:
            found = {"image": Export(ImageFeatures(placed), {"pixel_values": torch.zeros(2, 3, side, side)},
                                     {"pixel_values": {0: "batch"}, "features": {0: "batch"}})}
            if own_text:
                found["text"] = Export(_TextFeatures(placed, use_mask), {key: example[key] for key in inputs},
                                       {key: {0: "batch"} for key in inputs} | {"features": {0: "batch"}})
            return found

        encoders = build_encoders(model, exports, runtime, folder, fingerprint, cls.family)
        return cls(name, model.config, encoders, processor, runtime, fingerprint, random_weights(folder),
                   fast_preprocess, use_mask)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        if self.lowercase:
            texts = [text.lower() for text in texts]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        names = ("input_ids", "attention_mask") if self.use_mask else ("input_ids",)
        tokens = {key: self.runtime.to_device(tokens[key]) for key in names}
        return text_results(self.text_encoder(**tokens), lengths, self.max_tokens)


class _TextFeatures(torch.nn.Module):
    def __init__(self, model: SiglipModel, use_mask: bool):
        super().__init__()
        self.model = model
        self.use_mask = use_mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = attention_mask if self.use_mask else None
        return self.model.get_text_features(input_ids=input_ids, attention_mask=mask).pooler_output


class Siglip2Towers(SiglipTowers):
    family = "siglip2"
    lowercase = True
