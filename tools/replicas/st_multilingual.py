"""A random-weight replica of sentence-transformers/clip-ViT-B-32-multilingual-v1, the multilingual text
tower distilled (by sentence-transformers) from CLIP ViT-B/32's text tower.

The folder mirrors the published repository file for file, in the formats it was published in (the
sentence-transformers 2.x layout, which newer releases still read):

    modules.json                     Transformer at "", Pooling at 1_Pooling, Dense at 2_Dense
    sentence_bert_config.json        max_seq_length 128, do_lower_case false
    config_sentence_transformers.json
    config.json, model.safetensors, pytorch_model.bin     the DistilBertModel (both weight formats)
    vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json   cased WordPiece
    1_Pooling/config.json            mean pooling over the attention mask
    2_Dense/config.json, 2_Dense/model.safetensors, 2_Dense/pytorch_model.bin
                                     768 -> 512, no bias, identity activation; weight "linear.weight"

The files are written directly (torch, safetensors and transformers only) rather than by
`SentenceTransformer.save`, so the tool needs no sentence-transformers install and the configs keep the
published format instead of the newer one the installed release would write; the tests prove that
`SentenceTransformer(folder)` loads the result. The repository's README, ONNX and OpenVINO exports are
not replicated. Without `aligned_to` the output has the real 512 dimensions (64 for tiny); with it, the
aligned image model's.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tools.replicas import SEED, check_size, text_tower_target, write_json, write_marker
from tools.replicas.tokenizers import wordpiece_vocab

log = logging.getLogger(__name__)

MAX_SEQ_LENGTH = 128
VOCAB_SIZE = 119547  # distilbert-base-multilingual-cased
_B32 = {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072}
_TINY = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}
# The module classes as the published modules.json names them (paths newer releases still resolve).
_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
]
# The versions the published files were written with; sentence-transformers reads them to pick defaults.
_WRITTEN_BY = {"sentence_transformers": "2.0.0", "transformers": "4.7.0", "pytorch": "1.9.0+cu102"}


def _save_weights(state: dict, folder: Path) -> None:
    """Both formats, as the published repository has both (newer loaders take the safetensors)."""
    import torch
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous() for name, tensor in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    torch.save(state, folder / "pytorch_model.bin")


def _tokenizer(folder: Path, size: str) -> int:
    from transformers import DistilBertTokenizer

    vocab = wordpiece_vocab(VOCAB_SIZE if size == "b32" else None)
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    tokenizer = DistilBertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=False)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    write_json(folder / "special_tokens_map.json", _SPECIALS)
    write_json(folder / "tokenizer_config.json", {
        # Must be said: DistilBertTokenizer lowercases by default, and this model is cased.
        "do_lower_case": False,
        **_SPECIALS,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": 512,
        "tokenizer_class": "DistilBertTokenizer",
    })
    return len(vocab)


def write_random_st_multilingual(folder: str | Path, size: str = "tiny", aligned_to: str | Path | None = None) -> Path:
    """Write the replica (see the module docstring) and the marker with its teacher; return the folder."""
    check_size(size)
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    out_dim, teacher = text_tower_target(size, aligned_to)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _tokenizer(folder, size)
    shape = _B32 if size == "b32" else _TINY
    config = DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=512, sinusoidal_pos_embds=False,
                              activation="gelu", pad_token_id=0, **shape)
    torch.manual_seed(SEED)
    model = DistilBertModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # Written again in the older format too: the published repository carries both files.
    torch.save({name: tensor.contiguous() for name, tensor in model.state_dict().items()},
               folder / "pytorch_model.bin")
    dense = torch.nn.Linear(shape["dim"], out_dim, bias=False)
    _save_weights({"linear.weight": dense.weight}, folder / "2_Dense")

    write_json(folder / "modules.json", _MODULES)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    write_json(folder / "config_sentence_transformers.json", {"__version__": _WRITTEN_BY})
    write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": shape["dim"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(folder / "2_Dense" / "config.json", {
        "in_features": shape["dim"], "out_features": out_dim, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    })
    write_marker(folder, "multilingual text tower (sentence-transformers, DistilBERT)", teacher)
    log.info("wrote a random-weight st-multilingual text tower (%s, %d dims) to %s", size, out_dim, folder)
    return folder
