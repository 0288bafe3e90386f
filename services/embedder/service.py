"""What the embedder does, apart from HTTP: load the model, check and decode input, batch, answer.

`EmbedderService` owns the models (`registry.py`: the primary loaded in the background at start-up,
so `/healthz` answers and `/readyz` says "loading" meanwhile, and any loaded beside it), their
micro-batchers, the image-decoding thread pool and the metrics. Routes turn HTTP into calls on it;
every refusal is a `ServiceError` with a sentence.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from services.common.errors import BadRequest, ServiceError
from services.common.images import decode_base64, read_pixels
from services.embedder.batcher import MicroBatcher
from services.embedder.config import EmbedderSettings
from services.embedder.metrics import Metrics
from services.embedder.models import Towers, available_cores, load_towers
from services.embedder.registry import LoadedModel, ModelRegistry
from services.media.decode import decode_image

log = logging.getLogger(__name__)


class EmbedderService:
    def __init__(self, settings: EmbedderSettings, model: Towers | None = None,
                 model_thread: ThreadPoolExecutor | None = None):
        """`model`, when given, is the primary model as loaded, and `model_thread` is then the one-thread
        pool it was loaded on (benchmarks share one model across services; see the batcher on why torch
        work belongs on one thread)."""
        self.settings = settings
        self.metrics = Metrics()
        self._own_thread = model_thread is None
        self._model_thread = model_thread or ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.registry = ModelRegistry(settings, load=self._load_towers, model_thread=self._model_thread,
                                      on_batch=self.metrics.batch_observer, primary=model)
        self._decoder: ThreadPoolExecutor | None = None

    def _load_towers(self, name: str, text_model: str, primary: bool) -> Towers:
        settings = self.settings
        # The teacher override names the configured text tower's teacher; another tower declares its own.
        teacher = settings.text_teacher if primary or text_model == settings.text_model else ""
        return load_towers(name, text_model, settings.device, settings.dtype, settings.torch_threads,
                           settings.fast_preprocess, teacher, backend=settings.backend, onnx_cache=settings.onnx_cache)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._decoder = ThreadPoolExecutor(max_workers=self.settings.decode_threads or available_cores(),
                                           thread_name_prefix="decode")
        await self.registry.start()

    async def wait_loaded(self) -> None:
        await self.registry.wait_primary()

    async def stop(self) -> None:
        await self.registry.stop()
        if self._own_thread:
            self._model_thread.shutdown(wait=True, cancel_futures=True)
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)

    # The primary model, as before there were several.
    @property
    def model(self) -> Towers | None:
        return self.registry.primary.towers

    @property
    def batcher(self) -> MicroBatcher:
        return self.registry.primary.batcher

    @property
    def load_error(self) -> str | None:
        return self.registry.primary.reason

    @property
    def ready(self) -> bool:
        return self.registry.primary.state == "ready"

    def require_model(self, name: str | None = None) -> Towers:
        """The towers of the model `name` (None: the primary), or the error saying why there are none."""
        towers = self.registry.use(name).towers
        assert towers is not None
        return towers

    async def load_model(self, name: str, text_model: str | None, *, wait: bool) -> LoadedModel:
        return await self.registry.load(name, text_model, wait=wait)

    def models(self) -> list[dict]:
        return self.registry.describe()

    # -- texts ----------------------------------------------------------------------------------

    async def embed_texts(self, texts: list[str], model_name: str | None = None) -> dict:
        entry = self.registry.use(model_name)
        model = entry.towers
        self._check_count(len(texts), "text")
        for index, text in enumerate(texts):
            if not text.strip():
                self.metrics.count_rejected("empty_text")
                raise BadRequest(f"Text {index} is empty; send some words to embed.", code="empty_text")
            bad = None if text.isascii() else _lone_surrogate(text)
            if bad is not None:
                # JSON's \ud800 escapes decode to half a UTF-16 pair, which no tokenizer can encode.
                self.metrics.count_rejected("invalid_text")
                raise BadRequest(f"Text {index} holds a lone surrogate (U+{ord(text[bad]):04X} at character "
                                 f"{bad}), which is not valid Unicode; send the text as valid UTF-8.",
                                 code="invalid_text")
            if len(text) > self.settings.max_text_chars:
                self.metrics.count_rejected("text_too_long")
                raise BadRequest(f"Text {index} has {len(text):,} characters; the limit is "
                                 f"{self.settings.max_text_chars:,} (and only the first {model.max_tokens} "
                                 "tokens count).", code="text_too_long")
        results = await entry.batcher.submit("text", list(texts))
        return {**self._header(model), "vectors": [r.vector.tolist() for r in results],
                "truncated": [r.truncated for r in results]}

    # -- images ---------------------------------------------------------------------------------

    async def embed_images(self, images: list[bytes | str], *, per_item: bool, model_name: str | None = None) -> dict:
        """`images` are raw bytes (uploads) or base64 text; `per_item` turns refusals into entries;
        `model_name` as loaded (None: the primary)."""
        entry = self.registry.use(model_name)
        model = entry.towers
        self._check_count(len(images), "image")
        loop = asyncio.get_running_loop()
        prepared = await asyncio.gather(
            *(loop.run_in_executor(self._decoder, self._prepare_image, model, image) for image in images),
            return_exceptions=True)
        errors: list[dict | None] = [None] * len(images)
        for index, outcome in enumerate(prepared):
            if isinstance(outcome, ServiceError):
                self.metrics.count_rejected(outcome.code)
                if not per_item:
                    raise type(outcome)(f"Image {index} {outcome.message}", code=outcome.code)
                errors[index] = {"code": outcome.code, "message": f"Image {index} {outcome.message}"}
            elif isinstance(outcome, BaseException):
                raise outcome
        good = [index for index, error in enumerate(errors) if error is None]
        vectors = await entry.batcher.submit("image", [prepared[index] for index in good])
        by_index: list[list[float] | None] = [None] * len(images)
        for index, vector in zip(good, vectors):
            by_index[index] = vector.tolist()
        body = {**self._header(model), "vectors": by_index}
        if per_item:
            body["errors"] = errors
        return body

    async def embed_pixels(self, body: bytes, model_name: str | None = None) -> dict:
        """Pre-cropped 8-bit pixels (a .npy array, see `/v1/embed/pixels`) to vectors."""
        entry = self.registry.use(model_name)
        model = entry.towers
        if model.crop is None:
            raise BadRequest(f"The model {model.name!r} takes no pre-cropped pixels: its image processor is not "
                             "CLIP's usual resize-and-crop. Send encoded images to /v1/embed/image.",
                             code="pixels_unsupported")
        crops = read_pixels(body, (model.crop.crop_height, model.crop.crop_width))
        self._check_count(len(crops), "image")
        pixels = await asyncio.get_running_loop().run_in_executor(self._decoder, model.prepare_crops, crops)
        vectors = await entry.batcher.submit("image", [pixels[index:index + 1] for index in range(len(pixels))])
        return {**self._header(model), "vectors": [vector.tolist() for vector in vectors]}

    def _prepare_image(self, model: Towers, image: bytes | str):
        data = decode_base64(image) if isinstance(image, str) else image
        picture = decode_image(data, max_bytes=self.settings.max_image_bytes,
                               max_pixels=self.settings.max_image_pixels,
                               draft_size=model.image_size if self.settings.jpeg_draft else 0)
        return model.prepare_images([picture])

    # -- helpers --------------------------------------------------------------------------------

    def _check_count(self, count: int, noun: str) -> None:
        if count == 0:
            raise BadRequest(f"Send at least one {noun} to embed.", code="no_items")
        if count > self.settings.max_items:
            raise BadRequest(f"This request has {count} {noun}s; the limit is {self.settings.max_items} "
                             "per request. Split it into several requests.", code="too_many_items")

    @staticmethod
    def _header(model: Towers) -> dict:
        return {"model": model.name, "dim": model.dim, "random_weights": model.random_weights}


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


def _lone_surrogate(text: str) -> int | None:
    """The index of the first unpaired UTF-16 surrogate in `text`, or None when it encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
