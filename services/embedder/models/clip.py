"""CLIP of any size (B/32, B/16, L/14): both towers of one `CLIPModel`, through transformers.

Loading: in float32, then the fingerprint (of the weight files, or of the float32 state), then
`fold_quick_gelu`, then the cast to the serving precision. Texts are tokenized by the checkpoint's
own tokenizer, truncated at its context (77 tokens), padded to the batch's longest.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPModel, CLIPProcessor

from services.embedder.models.checkpoint import random_weights, read_json
from services.embedder.models.runtime import Runtime, TextResult, fingerprint_folder, text_results
from services.embedder.models.text import TextTower
from services.embedder.models.vision import VisionTower

_QUICK_GELU = 1.702  # quick_gelu(x) = x * sigmoid(1.702 x)


class ClipTowers(VisionTower, TextTower):
    """A loaded CLIP checkpoint: its image tower and its own (English) text tower."""

    family = "clip"

    def __init__(self, name: str, model: CLIPModel, processor: CLIPProcessor, runtime: Runtime, fingerprint: str,
                 random: bool, fast_preprocess: bool = True):
        dim = int(model.config.projection_dim)
        VisionTower.__init__(self, name, model, processor.image_processor, runtime, fingerprint, random, dim,
                             int(model.config.vision_config.image_size), fast_preprocess)
        TextTower.__init__(self, name, runtime, fingerprint, random, dim,
                           int(model.config.text_config.max_position_embeddings))
        self.processor = processor
        self.tokenizer = processor.tokenizer

    @classmethod
    def load(cls, name: str, folder: Path, runtime: Runtime, fast_preprocess: bool = True) -> ClipTowers:
        read_json(folder, "config.json", "CLIP")
        # SDPA: fused (flash / memory-efficient) attention kernels on CUDA; on the CPU it is the
        # same maths as the eager path, so the reference test holds either way. Loaded in float32:
        # the fingerprint and the activation rewrite below are done on the checkpoint's own values,
        # and only then is the model cast.
        model = CLIPModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
        processor = CLIPProcessor.from_pretrained(folder)
        # The same weights give the same fingerprint whatever the device and precision.
        fingerprint = fingerprint_folder(folder, model)
        fold_quick_gelu(model)
        return cls(name, runtime.place(model), processor, runtime, fingerprint, random_weights(folder),
                   fast_preprocess)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixels).pooler_output

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        """One forward pass over the texts; each longer than the model's context is truncated."""
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: self.runtime.to_device(value) for key, value in tokens.items()}
        return text_results(self.model.get_text_features(**tokens).pooler_output, lengths, self.max_tokens)


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


class _InplaceSiLU(torch.nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(hidden, inplace=True)
