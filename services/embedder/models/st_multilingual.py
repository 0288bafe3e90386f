"""Text towers in the sentence-transformers folder layout, such as
`sentence-transformers/clip-ViT-B-32-multilingual-v1` (multilingual DistilBERT distilled into CLIP
ViT-B/32's text space: queries in 50+ languages meet the image vectors already stored).

The layout is read exactly as sentence-transformers writes it: `modules.json` lists the modules in
order; the Transformer (path "" or `0_Transformer/`, with `sentence_bert_config.json`: max_seq_length
and do_lower_case), a Pooling (`1_Pooling/config.json`; mean or CLS pooling), Dense layers
(`2_Dense/config.json`: in and out features, bias, activation; weights `model.safetensors` or
`pytorch_model.bin`, keys `linear.weight` and `linear.bias`) and an optional Normalize. The maths
is sentence-transformers' own: attention-masked mean with the mask sum clamped at 1e-9, then each
Dense's activation(linear(x)). Tested equal to `SentenceTransformer(folder).encode` (cosine >= 0.9999).
Read here rather than through the library so the embedder carries one runtime for every tower.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from services.embedder.models.backends import Export, build_encoders
from services.embedder.models.checkpoint import CheckpointError, random_weights, read_json, require_files
from services.embedder.models.runtime import Runtime, TextResult, fingerprint_folder, read_weights, text_results
from services.embedder.models.text import TextTower

_FAMILY = "sentence-transformers"
_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": torch.nn.Identity,
    "torch.nn.modules.activation.Tanh": torch.nn.Tanh,
    "torch.nn.modules.activation.ReLU": torch.nn.ReLU,
    "torch.nn.modules.activation.GELU": torch.nn.GELU,
}
_SUPPORTED_POOLING = ("pooling_mode_mean_tokens", "pooling_mode_cls_token")


class SentenceTransformerText(TextTower):
    family = "st-multilingual"

    def __init__(self, name: str, encoder, tokenizer, runtime: Runtime, fingerprint: str, random: bool, dim: int,
                 max_tokens: int, lower: bool, teacher: str | None):
        super().__init__(name, runtime, fingerprint, random, dim, max_tokens, teacher)
        self.text_encoder = encoder
        self.tokenizer = tokenizer
        self.lower = lower

    @classmethod
    def load(cls, name: str, folder: Path, runtime: Runtime, teacher: str | None) -> SentenceTransformerText:
        modules = read_json(folder, "modules.json", _FAMILY)
        kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
        if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
            raise CheckpointError(f"{folder / 'modules.json'} lists {', '.join(kinds) or 'no modules'}; the embedder "
                                  "reads a Transformer, a Pooling, then Dense layers and an optional Normalize.")
        transformer_dir = folder / modules[0].get("path", "")
        settings = read_json(transformer_dir, "sentence_bert_config.json", _FAMILY) \
            if (transformer_dir / "sentence_bert_config.json").is_file() else {}
        require_files(transformer_dir, _FAMILY, ("config.json",),
                      ("model.safetensors", "pytorch_model.bin"))
        transformer = AutoModel.from_pretrained(transformer_dir, dtype=torch.float32,
                                                attn_implementation="sdpa").eval()
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
        max_tokens = int(settings.get("max_seq_length") or tokenizer.model_max_length)
        max_tokens = min(max_tokens, int(getattr(transformer.config, "max_position_embeddings", max_tokens)))
        pooling, dense = None, []
        for module, kind in zip(modules[1:], kinds[1:]):
            path = folder / module.get("path", "")
            if kind == "Pooling":
                pooling = _pooling_mode(path)
            elif kind == "Dense":
                dense.append(_dense(path))
            elif kind != "Normalize":  # unit vectors come out anyway
                raise CheckpointError(f"{folder / 'modules.json'} lists a {kind} module, which the embedder does "
                                      "not read; it reads Transformer, Pooling, Dense and Normalize.")
        dim = dense[-1][0].out_features if dense else int(transformer.config.hidden_size)
        fingerprint = fingerprint_folder(folder, transformer)
        module = _Sentence(transformer, pooling, torch.nn.Sequential(*dense)).eval()
        example = tokenizer(["a photo of a dog", "una foto"], padding=True, return_tensors="pt")
        inputs = ("input_ids", "attention_mask")

        def exports(placed: torch.nn.Module) -> dict[str, Export]:
            return {"text": Export(placed, {key: example[key] for key in inputs},
                                   {key: {0: "batch", 1: "tokens"} for key in inputs} | {"features": {0: "batch"}})}

        encoder = build_encoders(module, exports, runtime, folder, fingerprint, "st-multilingual")["text"]
        return cls(name, encoder, tokenizer, runtime, fingerprint, random_weights(folder), dim, max_tokens,
                   bool(settings.get("do_lower_case")), teacher)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        if self.lower:
            texts = [text.lower() for text in texts]
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        tokens = self.tokenizer(texts, padding=True, truncation="longest_first", max_length=self.max_tokens,
                                return_tensors="pt")
        tokens = {key: self.runtime.to_device(tokens[key]) for key in ("input_ids", "attention_mask")}
        return text_results(self.text_encoder(**tokens), lengths, self.max_tokens)


class _Sentence(torch.nn.Module):
    """Tokens to the sentence vector: the transformer, the pooling, then the Dense layers."""

    def __init__(self, transformer: torch.nn.Module, pooling: str | None, head: torch.nn.Module):
        super().__init__()
        self.transformer = transformer
        self.cls = pooling == "pooling_mode_cls_token"
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        if self.cls:
            return self.head(hidden[:, 0])
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9))


def _pooling_mode(path: Path) -> str:
    config = read_json(path, "config.json", _FAMILY)
    modes = [key for key, value in config.items() if key.startswith("pooling_mode") and value is True]
    if len(modes) != 1 or modes[0] not in _SUPPORTED_POOLING:
        raise CheckpointError(f"{path / 'config.json'} asks for {' + '.join(modes) or 'no'} pooling; the embedder "
                              "pools by mean or by the CLS token.")
    return modes[0]


def _dense(path: Path) -> torch.nn.Sequential:
    config = read_json(path, "config.json", _FAMILY)
    activation = _ACTIVATIONS.get(str(config.get("activation_function", "torch.nn.modules.activation.Tanh")))
    if activation is None:
        raise CheckpointError(f"{path / 'config.json'} names the activation {config.get('activation_function')!r}, "
                              f"which the embedder does not know ({', '.join(_ACTIVATIONS)}).")
    weights = require_files(path, _FAMILY, ("model.safetensors", "pytorch_model.bin"))["model.safetensors"]
    state = read_weights(weights)
    linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]),
                             bias=bool(config.get("bias", True)))
    try:
        linear.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit {path / 'config.json'}: {exc}") from None
    return torch.nn.Sequential(linear, activation())
