"""Wire models of the embedder's HTTP API (requests, responses, model info)."""
from __future__ import annotations

from pydantic import BaseModel, Field


class TextEmbedRequest(BaseModel):
    texts: list[str] = Field(..., description="Texts to embed; each longer than the model's context "
                                              "(77 tokens for CLIP, 64 for SigLIP, 128 for the multilingual tower) is truncated, and `truncated` says so.")


class ImageEmbedJson(BaseModel):
    images_base64: list[str] = Field(..., description="Encoded images (JPEG, PNG, WebP, ...) as base64 "
                                                      "or data URLs.")


class ItemError(BaseModel):
    code: str
    message: str


class EmbedResponse(BaseModel):
    model: str
    dim: int
    random_weights: bool = Field(False, description="True when the model has random weights: the vectors "
                                                    "are meaningless.")
    vectors: list[list[float] | None] = Field(..., description="Unit-length float32 vectors, in request order; "
                                                               "null for a refused item in per-item mode.")
    truncated: list[bool] | None = Field(None, description="Texts only: which texts were cut to the context.")
    errors: list[ItemError | None] | None = Field(None, description="Per-item mode only: why each null "
                                                                     "vector was refused.")


class ModelInfo(BaseModel):
    name: str = Field(description="The image model: photos are stored with its vectors.")
    family: str = Field("clip", description="The image model's family: clip, siglip or siglip2.")
    text_model: str | None = Field(None, description="The model that embeds texts: `name` itself, or a "
                                                     "multilingual text tower distilled into its space.")
    text_family: str | None = Field(None, description="clip, siglip, siglip2, st-multilingual or mclip.")
    text_fingerprint: str | None = None
    text_random_weights: bool = False
    languages: list[str] = Field(default_factory=list, description="ISO 639-1 codes of the languages the text "
                                                                    "tower was trained on (model cards).")
    dim: int
    device: str
    dtype: str
    backend: str = Field("torch", description="Where the forward passes run: torch or onnxruntime.")
    backend_note: str | None = Field(None, description="Why a tower runs on torch although ONNX Runtime was "
                                                       "chosen (an export or a cache folder that failed).")
    int8_cosine: dict[str, float] | None = Field(None, description="ONNX Runtime int8 only: each encoder's lowest "
                                                                  "cosine against its float32 graph, measured at load.")
    fingerprint: str
    random_weights: bool = Field(description="True when either tower has random weights.")
    image_size: int
    max_text_tokens: int = Field(description="The text tower's token limit; longer texts are truncated.")
    fast_preprocess: bool = False
    pixel_input: dict[str, int] | None = Field(
        None, description="How to crop for POST /v1/embed/pixels (shortest_edge, crop_height, crop_width, "
                          "resample: Pillow's filter number); null when this model takes no pre-cropped pixels.")


class LoadModelRequest(BaseModel):
    model: str = Field(..., min_length=1, description="The image model to load: a hub name or a folder, as "
                                                      "EMBEDDER_MODEL takes; later calls name it so in `?model=`.")
    text_model: str | None = Field("auto", description="Its text tower, as EMBEDDER_TEXT_MODEL takes; null: auto.")


class LoadedModelInfo(BaseModel):
    name: str = Field(description="The model as loaded: the value of `?model=` on every other call.")
    text_model: str | None = None
    state: str = Field(description="loading, ready or failed.")
    reason: str | None = Field(None, description="Why loading failed, in a sentence.")
    primary: bool = Field(description="True for EMBEDDER_MODEL, the model calls without `?model=` use.")

    model_config = {"extra": "allow"}  # the model's info (GET /v1/model's fields) once it is ready
