"""tools/random_model.py: random-weight replicas that load like real checkpoints and say what they are.

The proof that a replica has its family's layout is that the family's own reference library loads it:
transformers' AutoModel/AutoProcessor for the image families, `SentenceTransformer` for st-multilingual,
and the multilingual-clip package's classes for mclip.
"""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPModel, CLIPProcessor

from tools.random_model import (
    FAMILIES,
    MARKER_NAME,
    TEXT_FAMILIES,
    _config,
    main,
    write_random_clip,
    write_random_model,
)
from tools.replicas import DEFAULT_TEACHER

TEXTS = ["Un perro corriendo en la playa al atardecer", "A dog running on the beach at sunset"]
IMAGE_FAMILIES = tuple(family for family in FAMILIES if family not in TEXT_FAMILIES)
# The files each published checkpoint has (its README, .gitattributes and exported ONNX models aside).
FILES = {
    "clip": {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
             "special_tokens_map.json", "preprocessor_config.json"},
    "siglip": {"config.json", "model.safetensors", "spiece.model", "tokenizer_config.json",
               "special_tokens_map.json", "preprocessor_config.json"},
    "siglip2": {"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                "special_tokens_map.json", "preprocessor_config.json"},
    "st-multilingual": {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                        "config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt", "tokenizer.json",
                        "tokenizer_config.json", "special_tokens_map.json", "1_Pooling/config.json",
                        "2_Dense/config.json", "2_Dense/model.safetensors", "2_Dense/pytorch_model.bin"},
    # base-model/ stands in for the hub's xlm-roberta-large, which modelBase names in the real file.
    "mclip": {"config.json", "pytorch_model.bin", "sentencepiece.bpe.model", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "base-model/config.json",
              "base-model/model.safetensors", "base-model/sentencepiece.bpe.model", "base-model/tokenizer.json"},
}


@pytest.fixture(scope="session")
def replicas(tmp_path_factory, tiny_model_dir):
    """Every family at size tiny (the CLIP is the one every test run writes), plus two aligned text towers."""
    root = tmp_path_factory.mktemp("replicas")
    written = {"clip": tiny_model_dir}
    for family in FAMILIES[1:]:
        written[family] = write_random_model(root / family, family=family, size="tiny")
    # Aligned to SigLIP models, whose 32 dimensions differ from an unaligned tiny tower's 64.
    written["st-aligned"] = write_random_model(root / "st-aligned", "st-multilingual", "tiny", written["siglip"])
    written["mclip-aligned"] = write_random_model(root / "mclip-aligned", "mclip", "tiny", written["siglip2"])
    return written


def image_and_text_vectors(folder, family):
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    # SigLIP towers pool the last position, so they only work on text padded as in training.
    padding = {"padding": True} if family == "clip" else {"padding": "max_length", "max_length": 64}
    text = processor(text=TEXTS, return_tensors="pt", **padding)
    pixels = processor(images=[Image.new("RGB", (300, 200), "red")], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        return (model, processor, model.get_image_features(pixel_values=pixels).pooler_output,
                model.get_text_features(**text).pooler_output)


def st_vectors(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True)


def mclip_vectors(folder):
    """The multilingual-clip package's own classes and forward (mean pooling, then LinearTransformation).

    `MultilingualCLIP.from_pretrained` itself fails under transformers 5 (its __init__ calls
    from_pretrained again inside the meta-device context the outer call sets up), so the model is built
    from its config and given the checkpoint's state dict, which is what from_pretrained would do.
    """
    from multilingual_clip.Config_MCLIP import MCLIPConfig
    from multilingual_clip.pt_multilingual_clip import MultilingualCLIP
    from transformers import AutoTokenizer

    model = MultilingualCLIP(MCLIPConfig.from_pretrained(folder)).eval()
    model.load_state_dict(torch.load(folder / "pytorch_model.bin"))
    with torch.inference_mode():
        return model.forward(TEXTS, AutoTokenizer.from_pretrained(folder))


def files_of(folder):
    """The checkpoint's files: not the marker, nor the ONNX graphs the embedder caches beside a model
    it has loaded (the CLIP is the session's shared `tiny_model_dir`)."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")
            if path.is_file() and ".imagesearch-onnx" not in path.parts} - {MARKER_NAME}


def test_tiny_model_loads_through_from_pretrained_and_is_marked(tiny_model_dir):
    assert "meaningless" in (tiny_model_dir / MARKER_NAME).read_text()
    assert (tiny_model_dir / "model.safetensors").exists()
    model = CLIPModel.from_pretrained(tiny_model_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_model_dir)
    size = model.config.vision_config.image_size
    assert json.loads((tiny_model_dir / "preprocessor_config.json").read_text())["crop_size"]["height"] == size
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


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_image_families_load_in_transformers_and_embed_both_languages_and_images(replicas, family):
    model, processor, image, text = image_and_text_vectors(replicas[family], family)
    dim = model.config.projection_dim if family == "clip" else model.config.text_config.hidden_size
    assert image.shape == (1, dim) and text.shape == (2, dim)
    assert torch.isfinite(text).all() and not torch.equal(text[0], text[1])
    if family != "clip":
        assert type(processor).__name__ == "SiglipProcessor"
        expected = {"siglip": "SiglipTokenizer", "siglip2": "GemmaTokenizer"}[family]
        assert type(processor.tokenizer).__name__ == expected
        assert model.config.text_config.max_position_embeddings == 64


def test_st_multilingual_loads_in_sentence_transformers(replicas):
    vectors = st_vectors(replicas["st-multilingual"])
    assert vectors.shape == (2, 64) and not torch.equal(vectors[0], vectors[1])


def test_mclip_loads_in_the_multilingual_clip_package(replicas):
    config = json.loads((replicas["mclip"] / "config.json").read_text())
    assert config["model_type"] == "M-CLIP" and config["architectures"] == ["MultilingualCLIP"]
    assert config["modelBase"] == str((replicas["mclip"] / "base-model").resolve())
    vectors = mclip_vectors(replicas["mclip"])
    assert vectors.shape == (2, 64) and not torch.equal(vectors[0], vectors[1])
    keys = torch.load(replicas["mclip"] / "pytorch_model.bin").keys()
    assert {"LinearTransformation.weight", "LinearTransformation.bias"} <= set(keys)
    assert all(key.startswith(("transformer.", "LinearTransformation.")) for key in keys)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_replica_has_the_files_of_a_real_checkpoint_and_the_marker(replicas, family):
    assert files_of(replicas[family]) == FILES[family]
    marker = (replicas[family] / MARKER_NAME).read_text()
    assert "random weights" in marker and "meaningless" in marker
    if family in TEXT_FAMILIES:
        assert marker.splitlines()[-1] == f"teacher: {DEFAULT_TEACHER}"


def test_st_multilingual_configs_are_in_the_published_format(replicas):
    folder = replicas["st-multilingual"]
    modules = json.loads((folder / "modules.json").read_text())
    assert [(module["path"], module["type"].rsplit(".", 1)[1]) for module in modules] == [
        ("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")]
    assert json.loads((folder / "sentence_bert_config.json").read_text()) == {"max_seq_length": 128,
                                                                              "do_lower_case": False}
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    assert dense == {"in_features": 32, "out_features": 64, "bias": False,
                     "activation_function": "torch.nn.modules.linear.Identity"}


@pytest.mark.parametrize(("tower", "image_family"), [("st-aligned", "siglip"), ("mclip-aligned", "siglip2")])
def test_aligned_text_towers_take_the_image_models_dimension_and_name_it_as_teacher(replicas, tower, image_family):
    folder, image_folder = replicas[tower], replicas[image_family]
    vectors = st_vectors(folder) if tower == "st-aligned" else mclip_vectors(folder)
    dim = AutoModel.from_pretrained(image_folder).config.text_config.hidden_size
    assert vectors.shape == (2, dim) and dim != 64
    marker = (folder / MARKER_NAME).read_text().splitlines()
    assert marker[-1] == f"teacher: {image_folder.resolve()}"


def test_the_cli_aligns_a_tower_to_a_clip(tmp_path, tiny_model_dir, capsys):
    assert main([str(tmp_path / "st"), "--family", "st-multilingual", "--aligned-to", str(tiny_model_dir)]) == 0
    assert "meaningless" in capsys.readouterr().out
    assert json.loads((tmp_path / "st" / "2_Dense" / "config.json").read_text())["out_features"] == 64
    assert (tmp_path / "st" / MARKER_NAME).read_text().splitlines()[-1] == f"teacher: {tiny_model_dir.resolve()}"


def test_same_seed_same_weights_and_tokenizer_in_every_family(tmp_path, replicas):
    for family in FAMILIES[1:]:
        again = write_random_model(tmp_path / family, family=family)
        for name in files_of(again) - {"config.json"}:
            assert (again / name).read_bytes() == (replicas[family] / name).read_bytes(), (family, name)


def test_a_bad_family_is_refused_with_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "x"), "--family", "dino"])
    assert stop.value.code == 2
    assert "invalid choice: 'dino'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="clip, siglip, siglip2, st-multilingual, mclip"):
        write_random_model(tmp_path / "x", family="dino")


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_aligned_to_is_refused_for_image_families(tmp_path, tiny_model_dir, capsys, family):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "x"), "--family", family, "--aligned-to", str(tiny_model_dir)])
    assert stop.value.code == 2
    assert "--aligned-to is for the text towers (st-multilingual, mclip)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="image model"):
        write_random_model(tmp_path / "x", family=family, aligned_to=tiny_model_dir)


def test_aligned_to_a_folder_without_an_image_model_is_refused(tmp_path, replicas, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--family", "mclip", "--aligned-to", str(tmp_path / "nothing")])
    assert "has no" in capsys.readouterr().err
    with pytest.raises(ValueError, match="CLIP or SigLIP"):
        write_random_model(tmp_path / "y", "st-multilingual", aligned_to=replicas["mclip"] / "base-model")


def test_b32_tokenizers_cover_the_real_vocabularies(tmp_path):
    """b32 replicas are too slow to write here (10-25 s each); their tokenizers and shapes are not."""
    from transformers import DistilBertTokenizer, GemmaTokenizer, SiglipTokenizer, XLMRobertaTokenizer

    from tools.replicas import mclip, siglip, st_multilingual

    cases = [(siglip._siglip_tokenizer, SiglipTokenizer, 32000), (siglip._gemma_tokenizer, GemmaTokenizer, 256000),
             (mclip._tokenizer, XLMRobertaTokenizer, 250002), (st_multilingual._tokenizer, DistilBertTokenizer, 119547)]
    for write, tokenizer_class, vocab_size in cases:
        folder = tmp_path / tokenizer_class.__name__
        folder.mkdir()
        assert write(folder, "b32") == vocab_size
        tokenizer = tokenizer_class.from_pretrained(folder)
        assert len(tokenizer) == vocab_size
        assert max(tokenizer(TEXTS)["input_ids"][0]) < vocab_size
    config = siglip._config("siglip2", "b32", 256000)
    assert (config.text_config.hidden_size, config.text_config.max_position_embeddings) == (768, 64)
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (224, 16)
