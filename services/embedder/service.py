"""What the embedder does, apart from HTTP: load the model, check and decode input, batch, answer.

`EmbedderService` owns the model (loaded in the background at start-up, so `/healthz` answers and
`/readyz` says "loading" meanwhile), the micro-batcher, the image-decoding thread pool and the
metrics. Routes turn HTTP into calls on it; every refusal is a `ServiceError` with a sentence.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from services.common.errors import BadRequest, DependencyUnavailable, ServiceError
from services.common.images import decode_base64, read_pixels
from services.embedder.batcher import MicroBatcher, ModelNotReady
from services.embedder.config import EmbedderSettings
from services.embedder.metrics import Metrics
from services.embedder.models import CheckpointError, Towers, available_cores, load_towers
from services.media.decode import decode_image

log = logging.getLogger(__name__)


class EmbedderService:
    def __init__(self, settings: EmbedderSettings, model: Towers | None = None,
                 model_thread: ThreadPoolExecutor | None = None):
        """`model`, when given, is used as loaded, and `model_thread` is then the one-thread pool it
        was loaded on (benchmarks share one model across services; see the batcher on why torch
        work belongs on one thread)."""
        self.settings = settings
        self.metrics = Metrics()
        self.model: Towers | None = model
        self.load_error: str | None = None
        self.batcher = MicroBatcher(self._run_batch, max_batch=settings.max_batch,
                                    max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                                    on_batch=self.metrics.observe_batch, executor=model_thread)
        self._decoder: ThreadPoolExecutor | None = None
        self._load_task: asyncio.Task | None = None

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._decoder = ThreadPoolExecutor(max_workers=self.settings.decode_threads or available_cores(),
                                           thread_name_prefix="decode")
        await self.batcher.start()
        if self.model is None:
            self._load_task = asyncio.create_task(self._load(), name="load-model")

    async def _load(self) -> None:
        settings = self.settings
        log.info("loading %s", settings.embedder_model)
        try:
            # On the thread that will run every batch: one OpenMP team for the whole process.
            self.model = await self.batcher.call(functools.partial(
                load_towers, settings.embedder_model, settings.text_model, settings.device, settings.dtype,
                settings.torch_threads, settings.fast_preprocess, settings.text_teacher, backend=settings.backend,
                onnx_cache=settings.onnx_cache))
        except CheckpointError as exc:  # a sentence naming the file or the mismatch: no traceback needed
            log.error("could not load the models: %s", exc)
            self.load_error = f"The embedder's models could not be loaded: {exc}"
        except Exception as exc:  # reported by /readyz; the process stays up to say why
            log.exception("could not load the model %s", settings.embedder_model)
            self.load_error = f"The model {settings.embedder_model!r} could not be loaded: {exc}"

    async def wait_loaded(self) -> None:
        if self._load_task is not None:
            await self._load_task

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        await self.batcher.stop()
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def require_model(self) -> Towers:
        if self.model is not None:
            return self.model
        if self.load_error:
            raise DependencyUnavailable(self.load_error, code="model_failed", retry_after=30)
        raise ModelNotReady(f"The model {self.settings.embedder_model!r} is still loading; retry shortly.",
                            retry_after=2)

    # -- the model thread -------------------------------------------------------------------------

    def _run_batch(self, kind: str, items: list) -> list:
        model = self.require_model()
        if kind == "text":
            return model.embed_texts(items)
        return model.embed_images(items)

    # -- texts ----------------------------------------------------------------------------------

    async def embed_texts(self, texts: list[str]) -> dict:
        model = self.require_model()
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
        results = await self.batcher.submit("text", list(texts))
        return {**self._header(model), "vectors": [r.vector.tolist() for r in results],
                "truncated": [r.truncated for r in results]}

    # -- images ---------------------------------------------------------------------------------

    async def embed_images(self, images: list[bytes | str], *, per_item: bool) -> dict:
        """`images` are raw bytes (uploads) or base64 text; `per_item` turns refusals into entries."""
        model = self.require_model()
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
        vectors = await self.batcher.submit("image", [prepared[index] for index in good])
        by_index: list[list[float] | None] = [None] * len(images)
        for index, vector in zip(good, vectors):
            by_index[index] = vector.tolist()
        body = {**self._header(model), "vectors": by_index}
        if per_item:
            body["errors"] = errors
        return body

    async def embed_pixels(self, body: bytes) -> dict:
        """Pre-cropped 8-bit pixels (a .npy array, see `/v1/embed/pixels`) to vectors."""
        model = self.require_model()
        if model.crop is None:
            raise BadRequest(f"The model {model.name!r} takes no pre-cropped pixels: its image processor is not "
                             "CLIP's usual resize-and-crop. Send encoded images to /v1/embed/image.",
                             code="pixels_unsupported")
        crops = read_pixels(body, (model.crop.crop_height, model.crop.crop_width))
        self._check_count(len(crops), "image")
        pixels = await asyncio.get_running_loop().run_in_executor(self._decoder, model.prepare_crops, crops)
        vectors = await self.batcher.submit("image", [pixels[index:index + 1] for index in range(len(pixels))])
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
