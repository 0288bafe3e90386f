"""M-CLIP text towers (`M-CLIP/XLM-Roberta-Large-Vit-B-32` and its siblings): the layout of the
`multilingual-clip` package, read exactly.

`config.json` (model_type "M-CLIP") names `modelBase` (the transformer's architecture: a hub name
such as "xlm-roberta-large", or a local folder), `transformerDimensions` and `numDims`. The weights
(`pytorch_model.bin` or `model.safetensors`) hold the whole model: `transformer.*` and
`LinearTransformation.*`; so only the base's config is read from `modelBase`, never its weights. The
tokenizer files sit beside the weights. The maths is the package's own forward: the transformer's
last hidden state, averaged over the attention mask, through the Linear layer. One difference: the
package does not truncate (a text past 512 tokens fails there); here it is truncated and flagged.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from services.embedder.models.backends import Export, build_encoders
from services.embedder.models.checkpoint import CheckpointError, random_weights, read_json, require_files
from services.embedder.models.runtime import Runtime, TextResult, fingerprint_folder, read_weights, text_results
from services.embedder.models.text import TextTower

_FAMILY = "M-CLIP"


class MclipText(TextTower):
    family = "mclip"

    def __init__(self, name: str, encoder, tokenizer, runtime: Runtime, fingerprint: str, random: bool, dim: int,
                 max_tokens: int, teacher: str | None):
        super().__init__(name, runtime, fingerprint, random, dim, max_tokens, teacher)
        self.text_encoder = encoder
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, name: str, folder: Path, runtime: Runtime, teacher: str | None) -> MclipText:
        config = read_json(folder, "config.json", _FAMILY)
        missing = [key for key in ("modelBase", "transformerDimensions", "numDims") if key not in config]
        if missing:
            raise CheckpointError(f"{folder / 'config.json'} lacks {', '.join(missing)}: an M-CLIP config names "
                                  "its base model and both dimensions.")
        weights = require_files(folder, _FAMILY, ("pytorch_model.bin", "model.safetensors"))["pytorch_model.bin"]
        try:
            base = AutoConfig.from_pretrained(config["modelBase"])
        except Exception as exc:  # a hub name offline, or a folder without a config
            raise CheckpointError(f"The base model {config['modelBase']!r} named in {folder / 'config.json'} could "
                                  f"not be read ({type(exc).__name__}: {exc}); its config.json is needed once, "
                                  "with the internet or as a local folder.") from None
        transformer = AutoModel.from_config(base, attn_implementation="sdpa")
        linear = torch.nn.Linear(int(config["transformerDimensions"]), int(config["numDims"]))
        state = read_weights(weights)
        parts = {"transformer.": {}, "LinearTransformation.": {}}
        for key, value in state.items():
            for prefix, part in parts.items():
                if key.startswith(prefix):
                    part[key.removeprefix(prefix)] = value
        try:
            # Strict: every weight of the architecture must come from the checkpoint (position ids and
            # other buffers the architecture makes itself are the only keys allowed to be absent).
            result = transformer.load_state_dict(parts["transformer."], strict=False)
            linear.load_state_dict(parts["LinearTransformation."])
        except RuntimeError as exc:
            raise CheckpointError(f"{weights} does not fit the base model {config['modelBase']!r}: {exc}") from None
        absent = [key for key in result.missing_keys if not key.endswith(("position_ids", "token_type_ids"))]
        if absent or result.unexpected_keys:
            raise CheckpointError(f"{weights} does not fit the base model {config['modelBase']!r}: missing "
                                  f"{absent[:3]}, unexpected {result.unexpected_keys[:3]}.")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # XLM-R counts two position slots for its padding offset: 514 positions, 512 tokens.
        positions = int(getattr(base, "max_position_embeddings", 514))
        max_tokens = min(int(tokenizer.model_max_length), positions - 2 if positions > 2 else positions)
        fingerprint = fingerprint_folder(folder)
        example = tokenizer(["a photo of a dog", "una foto"], padding=True, return_tensors="pt")
        inputs = ("input_ids", "attention_mask")

        def exports(placed: torch.nn.Module) -> dict[str, Export]:
            return {"text": Export(placed, {key: example[key] for key in inputs},
                                   {key: {0: "batch", 1: "tokens"} for key in inputs} | {"features": {0: "batch"}})}

        module = _MaskedMean(transformer, linear).eval()
        encoder = build_encoders(module, exports, runtime, folder, fingerprint, "mclip")["text"]
        return cls(name, encoder, tokenizer, runtime, fingerprint, random_weights(folder), int(config["numDims"]),
                   max_tokens, teacher)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: self.runtime.to_device(tokens[key]) for key in ("input_ids", "attention_mask")}
        return text_results(self.text_encoder(**tokens), lengths, self.max_tokens)


class _MaskedMean(torch.nn.Module):
    """The package's forward: the last hidden state averaged over the attention mask, then Linear."""

    def __init__(self, transformer: torch.nn.Module, linear: torch.nn.Linear):
        super().__init__()
        self.transformer = transformer
        self.linear = linear

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.to(hidden.dtype)
        return self.linear((hidden * mask.unsqueeze(2)).sum(dim=1) / mask.sum(dim=1)[:, None])
