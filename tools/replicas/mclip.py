"""A random-weight replica of M-CLIP/XLM-Roberta-Large-Vit-B-32, the `multilingual-clip` package's text
tower (XLM-RoBERTa Large, mean-pooled, then a linear map into CLIP ViT-B/32's 512-dimensional space).

Layout, as the published repository and the package's `MultilingualCLIP` / `MCLIPConfig` have it:

    config.json          model_type "M-CLIP", architectures ["MultilingualCLIP"], modelBase,
                         transformerDimensions (the transformer's hidden size), numDims (output size)
    pytorch_model.bin    `transformer.*` (an XLMRobertaModel, pooler included) and
                         `LinearTransformation.weight` / `LinearTransformation.bias`
    sentencepiece.bpe.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json
                         the XLM-R tokenizer (vocab 250002 in b32)
    base-model/          config.json, model.safetensors, sentencepiece.bpe.model, tokenizer.json

The real `modelBase` is the hub name "xlm-roberta-large": `MultilingualCLIP.__init__` builds its
transformer with `AutoModel.from_pretrained(modelBase)` before the checkpoint's own weights replace
those. That name cannot be fetched here, so a replica writes the base model (config, tokenizer and
weights: the same random transformer as in pytorch_model.bin) into `base-model/` and sets `modelBase`
to that folder's absolute path. A loader reads the architecture from `modelBase` (a local folder, or a
hub name where there is a network) and every weight from `pytorch_model.bin`. Moving the folder breaks
that path; write the replica where it will be used.

Without `aligned_to` the output has the real 512 dimensions (64 for tiny); with it, the aligned image
model's.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tools.replicas import SEED, check_size, text_tower_target, write_json, write_marker
from tools.replicas.tokenizers import sentencepiece_model

log = logging.getLogger(__name__)

BASE_DIR = "base-model"
SPM_PIECES = 250000  # xlm-roberta-large's sentencepiece.bpe.model; its vocabulary adds <pad> and <mask>
_B32 = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# The <mask> token as the published files spell it (an AddedToken that swallows the space before it).
_MASK = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": True}
_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
             "pad_token": "<pad>", "cls_token": "<s>"}


def _tokenizer(folder: Path, size: str) -> int:
    """Write the XLM-R tokenizer files; return the vocabulary size."""
    from transformers import XLMRobertaTokenizer

    # XLM-R's SentencePiece numbering: <unk> 0, <s> 1, </s> 2 (the tokenizer moves them to fairseq's ids).
    model = sentencepiece_model("unigram", 1000, SPM_PIECES if size == "b32" else None,
                                unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    path = folder / "sentencepiece.bpe.model"
    path.write_bytes(model)
    # The same conversion from_pretrained runs for a checkpoint that has only the SentencePiece file.
    converted = XLMRobertaTokenizer.convert_to_native_format(vocab_file=str(path))
    converted.pop("vocab_file", None)
    tokenizer = XLMRobertaTokenizer(**converted)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    write_json(folder / "special_tokens_map.json", {**_SPECIALS, "mask_token": _MASK})
    write_json(folder / "tokenizer_config.json", {
        **_SPECIALS,
        "mask_token": {**_MASK, "__type": "AddedToken"},
        "model_max_length": 512,
        "special_tokens_map_file": None,
        "tokenizer_class": "XLMRobertaTokenizer",
    })
    return len(tokenizer)


def write_random_mclip(folder: str | Path, size: str = "tiny", aligned_to: str | Path | None = None) -> Path:
    """Write the replica (see the module docstring) and the marker with its teacher; return the folder."""
    check_size(size)
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out_dim, teacher = text_tower_target(size, aligned_to)
    folder = Path(folder)
    # modelBase must name the folder wherever the loader runs from.
    base = folder.resolve() / BASE_DIR
    base.mkdir(parents=True, exist_ok=True)
    vocab_size = _tokenizer(folder, size)
    for name in ("sentencepiece.bpe.model", "tokenizer.json"):
        shutil.copyfile(folder / name, base / name)

    shape = _B32 if size == "b32" else _TINY
    config = XLMRobertaConfig(vocab_size=vocab_size, max_position_embeddings=514, type_vocab_size=1,
                              layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **shape)
    torch.manual_seed(SEED)
    transformer = XLMRobertaModel(config).eval()
    transformer.save_pretrained(base, safe_serialization=True)
    head = torch.nn.Linear(shape["hidden_size"], out_dim)
    state = {f"transformer.{name}": tensor for name, tensor in transformer.state_dict().items()}
    state.update({f"LinearTransformation.{name}": tensor for name, tensor in head.state_dict().items()})
    torch.save({name: tensor.detach().contiguous() for name, tensor in state.items()}, folder / "pytorch_model.bin")

    write_json(folder / "config.json", {
        "architectures": ["MultilingualCLIP"],
        "model_type": "M-CLIP",
        "modelBase": str(base),
        "numDims": out_dim,
        "torch_dtype": "float32",
        "transformerDimensions": shape["hidden_size"],
    })
    write_marker(folder, "M-CLIP text tower (XLM-RoBERTa)", teacher)
    log.info("wrote a random-weight M-CLIP text tower (%s, %d dims) to %s", size, out_dim, folder)
    return folder
