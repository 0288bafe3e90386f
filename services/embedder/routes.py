"""HTTP routes of the embedder: health, metrics, model info, the models it serves, and the embedding
endpoints. Every embedding endpoint and `GET /v1/model` take `?model=`, a model as loaded by
`POST /v1/models` (absent: the primary, EMBEDDER_MODEL)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from services.common.errors import BadRequest, PayloadTooLarge
from services.embedder.schemas import (
    EmbedResponse,
    ImageEmbedJson,
    LoadedModelInfo,
    LoadModelRequest,
    ModelInfo,
    TextEmbedRequest,
)
from services.embedder.service import EmbedderService, UnsupportedMediaType

router = APIRouter()

# The optional `?model=` of every embedding call.
ModelName = Annotated[str | None, Query(description="A model as loaded by POST /v1/models; "
                                                                    "absent: the primary (EMBEDDER_MODEL).")]

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {
                    "images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["images"]},
            },
            "application/json": {"schema": ImageEmbedJson.model_json_schema()},
        },
    }
}


def _service(request: Request) -> EmbedderService:
    return request.app.state.embedder


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    """The process answers (the model may still be loading)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    """200 once the model is loaded; 503 with the reason before that."""
    # Raises a 503 saying "loading" or why loading failed.
    model = _service(request).require_model()
    return JSONResponse({"status": "ready", "model": model.name, "random_weights": model.random_weights})


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    service = _service(request)
    text = service.metrics.render(service.registry.queued_items, service.ready, service.registry.states())
    return Response(text, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/model", response_model=ModelInfo, tags=["model"])
async def model_info(request: Request, model: ModelName = None) -> dict:
    """Which model answers: name, vector size, device, precision, weights fingerprint."""
    return _service(request).require_model(model).info()


@router.get("/v1/models", response_model=list[LoadedModelInfo], tags=["model"])
async def list_models(request: Request) -> list[dict]:
    """Every model the embedder holds, loading, ready or failed; the primary first."""
    return _service(request).models()


@router.post("/v1/models", response_model=LoadedModelInfo, tags=["model"],
             responses={202: {"description": "Loading started (without `wait`)."},
                        409: {"description": "EMBEDDER_MAX_MODELS are held and none other than the primary is "
                                             "idle, or the model is loaded with another text tower."},
                        422: {"description": "With `wait`: the model could not be loaded (code model_failed)."}})
async def load_model(
    body: LoadModelRequest,
    request: Request,
    wait: Annotated[bool, Query(description="Answer once the model is ready (200) or has failed (422).")] = False,
) -> JSONResponse:
    """Load a model beside the primary (idempotent: a model loaded or loading answers its state)."""
    entry = await _service(request).load_model(body.model, body.text_model, wait=wait)
    if entry.state == "failed" and wait:
        raise BadRequest(entry.reason or f"The model {entry.name!r} could not be loaded.", code="model_failed")
    return JSONResponse(entry.describe(), status_code=202 if entry.state == "loading" else 200)


@router.post("/v1/embed/text", response_model=EmbedResponse, tags=["embed"])
async def embed_text(body: TextEmbedRequest, request: Request, model: ModelName = None) -> JSONResponse:
    """Unit-length vectors for texts, in order."""
    return JSONResponse(await _service(request).embed_texts(body.texts, model))


@router.post("/v1/embed/image", response_model=EmbedResponse, tags=["embed"], openapi_extra=_IMAGE_BODY)
async def embed_image(
    request: Request,
    per_item: Annotated[bool, Query(description="Refuse bad images one by one (null vector plus an "
                                                "entry in `errors`) instead of failing the request.")] = False,
    model: ModelName = None,
) -> JSONResponse:
    """Unit-length vectors for images sent as multipart files (`images`, repeated) or as JSON base64."""
    service = _service(request)
    service.require_model(model)
    settings = service.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Refuse an oversized body before reading it.
    declared = request.headers.get("content-length")
    limit = settings.max_body_bytes
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {int(declared):,} bytes; the limit is {limit:,}.")
    if content_type == "multipart/form-data":
        images = await _read_multipart(request, settings.max_items)
    elif content_type == "application/json":
        try:
            images = ImageEmbedJson.model_validate_json(await request.body()).images_base64
        except ValidationError as exc:
            raise BadRequest("The JSON body must be {\"images_base64\": [\"<base64>\", ...]}: "
                             f"{exc.errors()[0]['msg']}.") from None
    else:
        raise UnsupportedMediaType(
            f"Send images as multipart/form-data (field 'images') or as JSON {{\"images_base64\": [...]}}, "
            f"not {content_type or 'a body without a content type'}.")
    return JSONResponse(await service.embed_images(images, per_item=per_item, model_name=model))


_PIXELS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-npy": {"schema": {"type": "string", "format": "binary"}}},
        "description": "One .npy array (numpy.save, no pickles): uint8, images x crop_height x crop_width x 3, "
                       "each image resized and cropped as /v1/model's pixel_input says (services.common.images."
                       "ClipCrop does it).",
    }
}


@router.post("/v1/embed/pixels", response_model=EmbedResponse, tags=["embed"], openapi_extra=_PIXELS_BODY)
async def embed_pixels(request: Request, model: ModelName = None) -> JSONResponse:
    """Unit-length vectors for images already resized and cropped by the caller (8-bit RGB): the
    decoding and resizing then happen where the caller runs (ingest workers scale out), and the
    vectors are those the encoded images would get."""
    service = _service(request)
    towers = service.require_model(model)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-npy", "application/octet-stream"):
        raise UnsupportedMediaType(f"Send the pixels as one .npy array (application/x-npy), not "
                                   f"{content_type or 'a body without a content type'}.")
    crop = towers.crop
    limit = service.settings.max_items * (crop.crop_height * crop.crop_width * 3 if crop else 0) + 4096
    declared = request.headers.get("content-length")
    if crop and declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {int(declared):,} bytes; {service.settings.max_items} "
                              f"images of pixels take at most {limit:,}.")
    return JSONResponse(await service.embed_pixels(await request.body(), model))


async def _read_multipart(request: Request, max_items: int) -> list[bytes]:
    try:
        form = await request.form(max_files=max_items + 1, max_fields=max_items + 16)
    except MultiPartException as exc:
        raise BadRequest(f"The multipart body could not be read: {exc.message} "
                         f"(at most {max_items} images per request).") from None
    try:
        parts = form.getlist("images")
        if not parts:
            raise BadRequest("Send the images as files in the multipart field 'images'.", code="no_items")
        if len(parts) > max_items:
            raise BadRequest(f"This request has {len(parts)} images; the limit is {max_items} per request.",
                             code="too_many_items")
        images = []
        for index, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise BadRequest(f"Image {index} is a text field; send each image as a file.",
                                 code="not_an_image")
            images.append(await part.read())
        return images
    finally:
        await form.close()
