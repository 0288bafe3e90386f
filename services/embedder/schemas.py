"""Wire models of the embedder's HTTP API (requests, responses, model info)."""
from __future__ import annotations

from pydantic import BaseModel, Field


class TextEmbedRequest(BaseModel):
    texts: list[str] = Field(..., description="Texts to embed; each longer than the model's context "
                                              "(77 tokens for CLIP) is truncated, and `truncated` says so.")


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
    name: str
    dim: int
    device: str
    dtype: str
    fingerprint: str
    random_weights: bool
    image_size: int
    max_text_tokens: int
    fast_preprocess: bool = False
    pixel_input: dict[str, int] | None = Field(
        None, description="How to crop for POST /v1/embed/pixels (shortest_edge, crop_height, crop_width, "
                          "resample: Pillow's filter number); null when this model takes no pre-cropped pixels.")
