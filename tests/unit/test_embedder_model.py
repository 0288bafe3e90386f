"""services/embedder/models/ (clip.py, runtime.py, vision.py): precision chosen from the CPU, the fast preprocessing path equal to
CLIPProcessor, and reduced precision within a stated tolerance of float32."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPProcessor

from services.common.images import ClipCrop
from services.embedder.models import load_towers
from services.embedder.models.clip import ClipTowers, fold_quick_gelu
from services.embedder.models.runtime import cpu_has_amx, resolve_dtype
from services.embedder.models.vision import Normaliser
from services.media.decode import decode_image


def load_clip(folder, dtype: str) -> ClipTowers:
    """The tiny CLIP's towers (image and its own text tower: one object), on the CPU, in torch."""
    return load_towers(str(folder), "same", device="cpu", dtype=dtype, backend="torch").image

# bf16 keeps 8 bits of mantissa: vectors stay this close to float32 ones (per vector, cosine).
BF16_MIN_COSINE = 0.999
# JPEG draft decoding (DCT scaling) is not the reference's bicubic resize: pixels differ a little.
DRAFT_MIN_COSINE = 0.99
# int8 weights (one scale per output channel) and activations (one scale per layer input, so per
# batch): measured 0.9999 for images and 0.9988 for texts on the tiny model, 0.9996 on ViT-B/32 shapes.
INT8_MIN_COSINE = 0.99

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile amx_int8\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


def test_amx_is_detected_from_cpuinfo_or_torch_capability():
    assert cpu_has_amx(SAPPHIRE_RAPIDS, "AVX512") is True
    assert cpu_has_amx(ZEN3, "AVX2") is False
    assert cpu_has_amx("", "AVX512_AMX") is True
    assert cpu_has_amx("", "") is False
    # This machine: the answer is whatever its flags say, without error.
    assert isinstance(cpu_has_amx(), bool)


def test_auto_precision_is_bf16_only_on_amx_cpus_and_fp16_on_cuda():
    assert resolve_dtype("auto", "cpu", amx=True) == torch.bfloat16
    assert resolve_dtype("auto", "cpu", amx=False) == torch.float32
    assert resolve_dtype("auto", "cuda", amx=False) == torch.float16
    assert resolve_dtype("auto", "cuda:1", amx=True) == torch.float16
    assert resolve_dtype("bfloat16", "cpu", amx=False) == torch.bfloat16
    assert resolve_dtype("float32", "cpu", amx=True) == torch.float32
    assert resolve_dtype("int8", "cpu", amx=False) == torch.float32  # computes around its int8 layers
    with pytest.raises(ValueError, match="int8 runs on the CPU only; on cuda use float16"):
        resolve_dtype("int8", "cuda", amx=False)


def varied_pictures() -> dict[str, Image.Image]:
    rng = np.random.default_rng(7)

    def noise(width: int, height: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))

    return {"landscape": noise(200, 150), "portrait": noise(150, 200), "square": noise(64, 64),
            "one pixel": noise(1, 1), "wide 100:1": noise(1000, 10), "tall 1:60": noise(5, 300),
            "odd": noise(641, 479), "small": noise(13, 9), "big": noise(1600, 1200)}


def fast_path(processor):
    """The embedder's fast preprocessing: ClipCrop's 8-bit crop, then the Normaliser (None: no recipe)."""
    crop = ClipCrop.from_processor(processor)
    if crop is None:
        return None
    normalise = Normaliser.from_processor(processor)
    return lambda picture: normalise(crop(picture)[None])[0]


@pytest.mark.parametrize("size", ["tiny", "b32"])
def test_fast_preprocessing_equals_clip_processor(tiny_model_dir, size):
    from tools.random_model import CLIP_CONFIG_DIR

    folder = tiny_model_dir if size == "tiny" else CLIP_CONFIG_DIR
    processor = CLIPProcessor.from_pretrained(folder).image_processor
    fast = fast_path(processor)
    assert fast is not None
    for name, picture in varied_pictures().items():
        expected = processor(images=[picture], return_tensors="np")["pixel_values"][0]
        got = fast(picture)
        assert got.shape == expected.shape and got.dtype == np.float32, name
        difference = np.abs(got - expected)
        width, height = picture.size
        if max(width, height) <= 4 * min(width, height):
            # The processor's own resize and crop: only float rounding differs.
            assert difference.max() < 1e-5, name
        else:
            # Box resize: at most one 8-bit level (1/255/std = 0.015) in a few pixels.
            assert difference.max() <= 0.016, name
            assert difference.mean() < 1e-3, name


def test_a_very_elongated_picture_costs_no_more_than_a_square_one(tiny_model_dir):
    processor = CLIPProcessor.from_pretrained(tiny_model_dir).image_processor
    fast = fast_path(processor)
    # The processor would resize this to 64x3.2 million pixels before cropping.
    line = Image.linear_gradient("L").resize((1, 50_000)).convert("RGB")
    started = time.perf_counter()
    pixels = fast(line)
    assert pixels.shape == (3, 64, 64) and time.perf_counter() - started < 0.5


def test_unusual_processor_settings_fall_back_to_the_processor(tiny_model_dir):
    processor = CLIPProcessor.from_pretrained(tiny_model_dir).image_processor
    processor.do_center_crop = False
    assert fast_path(processor) is None


def photos() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    pictures = []
    for index in range(6):
        base = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).resize((256, 192))
        base.paste((255 * (index % 2), 40 * index, 200), (0, 0, 90, 192))
        pictures.append(base)
    return pictures


def cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.sum(first * second, axis=1) / (np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1))


TEXTS = ["a photo of a dog", "una playa al atardecer", "sunset " * 90]


def against_float32(full: ClipTowers, other: ClipTowers, pixels: list[torch.Tensor]):
    """Image and text vectors of the same inputs from the float32 model and `other`, whose vectors
    must still be float32 unit vectors: ((reference, other's) images, (reference, other's) texts)."""
    images = np.stack(full.embed_images(pixels)), np.stack(other.embed_images(pixels))
    texts = tuple(np.stack([r.vector for r in model.embed_texts(TEXTS)]) for model in (full, other))
    for vectors in (images[1], texts[1]):
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    return images, texts


def test_bf16_on_the_cpu_stays_within_the_stated_tolerance_of_fp32(tiny_model_dir):
    full = load_clip(tiny_model_dir, "float32")
    half = load_clip(tiny_model_dir, "bfloat16")
    assert half.image_info()["dtype"] == "bfloat16" and half.fingerprint == full.fingerprint
    images, texts = against_float32(full, half, [full.preprocess_images([picture]) for picture in photos()])
    assert cosine(*images).min() >= BF16_MIN_COSINE and cosine(*texts).min() >= BF16_MIN_COSINE


def test_int8_on_the_cpu_stays_within_the_stated_tolerance_of_fp32(tiny_model_dir):
    full = load_clip(tiny_model_dir, "float32")
    quantized = load_clip(tiny_model_dir, "int8")
    assert quantized.image_info()["dtype"] == "int8" and quantized.fingerprint == full.fingerprint
    # Every Linear layer of both towers is quantized; none is left in float32.
    modules = list(quantized.model.modules())
    assert not any(isinstance(module, torch.nn.Linear) for module in modules)
    dynamic = [m for m in modules if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(dynamic) == sum(isinstance(module, torch.nn.Linear) for module in full.model.modules())
    pixels = [full.preprocess_images([picture]) for picture in photos()]
    (reference, batched), texts = against_float32(full, quantized, pixels)
    assert cosine(reference, batched).min() >= INT8_MIN_COSINE and cosine(*texts).min() >= INT8_MIN_COSINE
    # The activations' scale is the batch's: an image's vector depends a little on its companions,
    # within the same tolerance.
    alone = np.stack([quantized.embed_images([p])[0] for p in pixels])
    assert cosine(alone, batched).min() >= INT8_MIN_COSINE and cosine(reference, alone).min() >= INT8_MIN_COSINE
    assert [r.truncated for r in quantized.embed_texts(TEXTS)] == [False, False, True]


def test_jpeg_draft_decoding_stays_within_its_stated_tolerance(tiny_model_dir):
    model = load_clip(tiny_model_dir, "float32")
    limits = {"max_bytes": 10_000_000, "max_pixels": 10_000_000}
    encoded = []
    for picture in photos():
        buffer = io.BytesIO()
        picture.resize((1024, 768), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    drafted = [decode_image(data, **limits, draft_size=model.image_size) for data in encoded]
    # 1024x768 against a 64-pixel model: the decoder scaled by 8, never below the model's input size.
    assert all(picture.size == (128, 96) for picture in drafted)
    exact = np.stack(model.embed_images([model.preprocess_images([decode_image(d, **limits)]) for d in encoded]))
    fast = np.stack(model.embed_images([model.preprocess_images([picture]) for picture in drafted]))
    assert cosine(exact, fast).min() >= DRAFT_MIN_COSINE


def test_quick_gelu_is_folded_into_silu_without_changing_the_vectors(tiny_model_dir):
    from transformers import CLIPModel

    original = CLIPModel.from_pretrained(str(tiny_model_dir)).eval()
    folded = CLIPModel.from_pretrained(str(tiny_model_dir)).eval()
    layers = original.config.vision_config.num_hidden_layers + original.config.text_config.num_hidden_layers
    assert fold_quick_gelu(folded) == layers
    side = original.config.vision_config.image_size
    pixels = torch.from_numpy(np.stack([np.asarray(p.resize((side, side)), dtype=np.float32).transpose(2, 0, 1) / 255
                                        for p in photos()]))
    tokens = CLIPProcessor.from_pretrained(str(tiny_model_dir)).tokenizer(
        ["a photo of a dog", "una playa al atardecer"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        for run in (lambda m: m.get_image_features(pixel_values=pixels), lambda m: m.get_text_features(**tokens)):
            expected, actual = run(original).pooler_output, run(folded).pooler_output
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    mlp = folded.vision_model.encoder.layers[0].mlp
    assert type(mlp.activation_fn).__name__ == "_InplaceSiLU"


def test_folding_leaves_other_activations_alone(tiny_model_dir):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig.from_pretrained(str(tiny_model_dir))
    config.vision_config.hidden_act = "gelu"
    model = CLIPModel(config).eval()
    weights = model.vision_model.encoder.layers[0].mlp.fc1.weight.clone()
    assert fold_quick_gelu(model) == config.text_config.num_hidden_layers
    assert torch.equal(model.vision_model.encoder.layers[0].mlp.fc1.weight, weights)
    assert type(model.vision_model.encoder.layers[0].mlp.activation_fn).__name__ != "_InplaceSiLU"
