"""Settings of the embedder service (env prefix `EMBEDDER_`; `EMBEDDER_MODEL` is shared)."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import CommonSettings


class EmbedderSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDDER_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # The tower that embeds queries. "auto": a multilingual tower distilled into the image model's space
    # where one is published for it (openai/clip-vit-base-patch32 -> sentence-transformers/
    # clip-ViT-B-32-multilingual-v1), else the image model's own. "same": always the image model's own.
    # A hub name or folder of a sentence-transformers or M-CLIP text tower: that tower, refused at start
    # unless its teacher and dimension match the image model (services/embedder/README.md).
    text_model: str = "auto"
    # The image model a text tower was distilled from, when the tower does not declare it (a tower of
    # your own); published towers declare theirs.
    text_teacher: str = ""
    # Where the forward passes run. "auto": ONNX Runtime on the CPU (graphs exported once, at first start,
    # and cached beside the model), torch on a GPU, and torch on a CPU with AMX when the precision is
    # left to auto (bfloat16 there ran 4x float32). services/embedder/README.md, "Backends".
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    # Where the exported ONNX graphs are kept; empty: a `.imagesearch-onnx` folder beside the model.
    onnx_cache: str = ""
    # "auto" picks CUDA when there is one.
    device: str = "auto"
    # "auto" is float16 on CUDA; on the CPU bfloat16 where the CPU has AMX tiles (5x faster than
    # float32 there), else float32 (without AMX, bfloat16 is emulated and several times slower).
    # "int8" (CPU only, never chosen by auto): Linear layers dynamically quantized; faster than float32
    # on CPUs without AMX, vectors moved slightly (services/embedder/README.md, Precision).
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = "auto"
    # CLIPProcessor's resize and crop without its numpy round trips; beyond 4:1 only the kept box is
    # resized (a 50000x1 picture would otherwise cost gigabytes). Vectors within 1e-4 of the
    # processor's. Off: CLIPProcessor itself.
    fast_preprocess: bool = True
    # Let the JPEG decoder scale big photos down while decoding (to no less than the model's input
    # size). Faster for large photos, but not the reference pixels: off by default.
    jpeg_draft: bool = False
    # Micro-batching: concurrent requests are embedded together, up to this many items per forward
    # pass, waiting at most this long for company once the first item arrives. 0: no waiting; what
    # arrives while the model works still shares the next pass (waiting gained no throughput and cost
    # a lone query its wait: services/embedder/README.md, Throughput).
    max_batch: int = Field(64, ge=1, le=4096)
    max_wait_ms: float = Field(0.0, ge=0.0, le=1000.0)
    # Items waiting for the model beyond this are refused with 503 + Retry-After, so an overloaded
    # embedder sheds load instead of growing its memory and latency without bound.
    max_queue: int = Field(2048, ge=1)
    # Per request.
    max_items: int = Field(256, ge=1)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(64_000_000, ge=1)
    max_text_chars: int = Field(10_000, ge=1)
    # A request body must arrive within this many seconds of its first byte (slow senders hold a
    # connection and its buffers): services/common/http.BodyGuardMiddleware.
    body_timeout_s: float = Field(60.0, gt=0)
    # Models served at once (registry.py): the primary plus those loaded by POST /v1/models, e.g. a new
    # model while a re-embedding job runs. Loading one more unloads the least recently used other
    # model, unless each was used within `model_idle_s` seconds (then the load is refused, 409).
    max_models: int = Field(2, ge=1)
    model_idle_s: float = Field(60.0, ge=0)
    # 0 = as many as the cores this process may use.
    torch_threads: int = Field(0, ge=0)
    decode_threads: int = Field(0, ge=0)
    log_level: str = "INFO"

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: `max_items` images of `max_image_bytes` as base64, plus room."""
        return self.max_items * self.max_image_bytes * 4 // 3 + 1024 * 1024


@lru_cache
def get_settings() -> EmbedderSettings:
    return EmbedderSettings()
