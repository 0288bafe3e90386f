"""Random-weight SigLIP and SigLIP 2 (FixRes) replicas, laid out like google/siglip-base-patch16-224
and google/siglip2-base-patch16-224.

Both load as `SiglipModel` (config model_type "siglip") and both folders hold `config.json`,
`model.safetensors`, `preprocessor_config.json` (SiglipImageProcessor, processor_class SiglipProcessor,
so `AutoProcessor` returns a SiglipProcessor), `tokenizer_config.json` and `special_tokens_map.json`.
They differ in the tokenizer and the resampling filter:

- siglip: SiglipTokenizer over SentencePiece `spiece.model` (vocab 32000; lowercases and drops
  punctuation itself, appends `</s>`, pads with `</s>`), images resized to 224x224 bicubic (3).
- siglip2: GemmaTokenizer, `tokenizer.json` plus its SentencePiece source `tokenizer.model`
  (vocab 256000), images resized bilinear (2). The layout and tokenizer settings follow transformers'
  own conversion script for these checkpoints (models/siglip/convert_siglip_to_hf.py: Gemma tokenizer
  with add_bos_token False, add_eos_token True, padding_side "right", do_lower_case True,
  model_input_names ["input_ids"]; SiglipImageProcessor(resample=2)) and the file list of the
  published google/siglip2-base-patch16-224 repository.

Both towers were trained on text padded to 64 tokens and pool the last position, so text must be
tokenized with padding="max_length", max_length=64 (text_config.max_position_embeddings).
The shared vector space is the text tower's hidden size (768 for base, 32 for tiny).
"""
from __future__ import annotations

import logging
from pathlib import Path

from tools.replicas import SEED, check_size, write_json, write_marker
from tools.replicas.tokenizers import sentencepiece_model

log = logging.getLogger(__name__)

TEXT_LENGTH = 64
TINY_IMAGE_SIZE = 64
_TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
VOCAB_SIZES = {"siglip": 32000, "siglip2": 256000}
NAMES = {"siglip": "SigLIP", "siglip2": "SigLIP 2"}
# The tokenizers' own ids (the library defaults, 49406/49407, are CLIP's and lie outside both vocabularies).
_TOKEN_IDS = {"siglip": {"pad_token_id": 1, "bos_token_id": None, "eos_token_id": 1},
              "siglip2": {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1}}
_LONG = 1000000000000000019884624838656  # transformers' "no limit" model_max_length, as Gemma's files carry


def _token(content: str, strip: bool = False) -> dict:
    return {"content": content, "lstrip": strip, "normalized": False, "rstrip": strip, "single_word": False}


def _siglip_tokenizer(folder: Path, size: str) -> int:
    """Write SiglipTokenizer files (as the real checkpoint has them); return the vocabulary size."""
    model = sentencepiece_model(
        "unigram", 1000, VOCAB_SIZES["siglip"] if size == "b32" else None,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
    )
    (folder / "spiece.model").write_bytes(model)
    eos, unk = _token("</s>", strip=True), _token("<unk>", strip=True)
    write_json(folder / "special_tokens_map.json", {"eos_token": eos, "pad_token": eos, "unk_token": unk})
    write_json(folder / "tokenizer_config.json", {
        "added_tokens_decoder": {"1": {**eos, "special": True}, "2": {**unk, "special": True}},
        "additional_special_tokens": [],
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "</s>",
        # The original model reads no attention mask: padding is attended to, as in training.
        "model_input_names": ["input_ids"],
        "model_max_length": TEXT_LENGTH,
        "pad_token": "</s>",
        "processor_class": "SiglipProcessor",
        "sp_model_kwargs": {},
        "tokenizer_class": "SiglipTokenizer",
        "unk_token": "<unk>",
    })
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model).get_piece_size()


_GEMMA_SPECIALS = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>", 5: "<start_of_turn>",
                   6: "<end_of_turn>"}


def _gemma_tokenizer(folder: Path, size: str) -> int:
    """Write GemmaTokenizer files: tokenizer.model, and tokenizer.json converted from it by transformers."""
    from transformers import GemmaTokenizer

    model = sentencepiece_model(
        # Gemma's own trainer settings: byte fallback, digits split, whitespace kept verbatim.
        "bpe", 1000, VOCAB_SIZES["siglip2"] if size == "b32" else None,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=[_GEMMA_SPECIALS[i] for i in (4, 5, 6)], byte_fallback=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
        split_digits=True, allow_whitespace_only_pieces=True,
    )
    path = folder / "tokenizer.model"
    path.write_bytes(model)
    # The same path from_pretrained takes for a checkpoint that has only tokenizer.model.
    converted = GemmaTokenizer.convert_to_native_format(vocab_file=str(path))
    converted.pop("vocab_file", None)
    # transformers 5 ignores add_bos/eos_token in tokenizer_config.json when tokenizer.json exists:
    # the post-processor saved in tokenizer.json appends the <eos>, as in the real file.
    tokenizer = GemmaTokenizer(**converted, add_bos_token=False, add_eos_token=True)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    specials = {key: _token(_GEMMA_SPECIALS[i]) for key, i in
                (("pad_token", 0), ("eos_token", 1), ("bos_token", 2), ("unk_token", 3))}
    write_json(folder / "special_tokens_map.json", {
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"], **specials,
    })
    write_json(folder / "tokenizer_config.json", {
        "add_bos_token": False,
        "add_eos_token": True,
        "added_tokens_decoder": {str(i): {**_token(text), "special": True} for i, text in _GEMMA_SPECIALS.items()},
        "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
        "bos_token": "<bos>",
        "clean_up_tokenization_spaces": False,
        # Stored, but GemmaTokenizer does not act on it: callers lowercase the text themselves.
        "do_lower_case": True,
        "eos_token": "<eos>",
        "model_input_names": ["input_ids"],
        "model_max_length": _LONG,
        "pad_token": "<pad>",
        "padding_side": "right",
        "processor_class": "SiglipProcessor",
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "GemmaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    })
    return len(tokenizer)


def _preprocessor(folder: Path, family: str, image_size: int) -> None:
    config = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": 3 if family == "siglip" else 2,
        "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
    }
    if family == "siglip2":
        config = {"do_convert_rgb": None, **config}
    write_json(folder / "preprocessor_config.json", config)


def _config(family: str, size: str, vocab_size: int):
    from transformers import SiglipConfig

    text = {"vocab_size": vocab_size, "max_position_embeddings": TEXT_LENGTH, **_TOKEN_IDS[family]}
    vision = {}
    if size == "tiny":
        text.update(_TINY_TOWER)
        vision.update(_TINY_TOWER, image_size=TINY_IMAGE_SIZE, patch_size=16)
    return SiglipConfig(text_config=text, vision_config=vision)


def write_random_siglip(folder: str | Path, size: str = "tiny", family: str = "siglip") -> Path:
    """Write a random-weight SigLIP (`family` "siglip") or SigLIP 2 FixRes ("siglip2"); return the folder."""
    check_size(size)
    if family not in VOCAB_SIZES:
        raise ValueError(f"family must be one of {', '.join(VOCAB_SIZES)}, not {family!r}")
    import torch
    from transformers import SiglipModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = (_siglip_tokenizer if family == "siglip" else _gemma_tokenizer)(folder, size)
    config = _config(family, size, vocab_size)
    torch.manual_seed(SEED)
    SiglipModel(config).eval().save_pretrained(folder, safe_serialization=True)
    _preprocessor(folder, family, config.vision_config.image_size)
    write_marker(folder, f"{NAMES[family]} model")
    log.info("wrote a random-weight %s (%s) to %s", NAMES[family], size, folder)
    return folder
