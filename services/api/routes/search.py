"""POST /v1/search: one endpoint for JSON and multipart queries; parsing only, the rest is `query.py`."""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from services.api.deps import ServicesDep, SettingsDep, require_read_key
from services.api.query import (
    QueryTerm,
    SearchQuery,
    byte_size,
    check_query_images,
    decode_base64_image,
    run_search,
)
from services.api.schemas import TERMS_MAX, SearchRequest, SearchResponse
from services.api.signing import sign_urls
from services.common.errors import BadRequest, PayloadTooLarge
from services.photostore.filters import parse_filters_json

router = APIRouter(tags=["search"], dependencies=[Depends(require_read_key)])

# Form fields besides the file: everything else is a mistake worth naming.
_FORM_FIELDS = set(SearchRequest.model_fields) - {"image_base64"}
# Files a multipart query may carry: `image` (the query image, or a term's) and `image_1` ... for terms.
_FILE_FIELDS = {"image", *(f"image_{i}" for i in range(1, TERMS_MAX + 1))}
_SEARCH_SCHEMA = SearchRequest.model_json_schema()
_MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "A query image file."},
        **{f"image_{i}": {"type": "string", "format": "binary",
                          "description": "A term's image file, named by that term's `image`."}
           for i in range(1, TERMS_MAX + 1)},
        **{name: {"type": "string", "description": (field.description or "")
                  + (" (JSON text)" if name in ("filters", "terms") else "")}
           for name, field in SearchRequest.model_fields.items() if name != "image_base64"},
    },
}


def validation_sentence(exc: ValidationError) -> str:
    """Pydantic's errors as one sentence a person can act on (our validators' messages verbatim)."""
    parts = []
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error.get("loc", ()))
        if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
            # A term's mistake says which term (terms.1 is the second).
            prefix = f"{field}: " if field.startswith("terms.") else ""
            parts.append(prefix + str(error["ctx"]["error"]))
        elif error.get("type") == "extra_forbidden":
            parts.append(f"{field} is not a search field")
        else:
            parts.append(f"{field}: {error.get('msg', 'is invalid')}" if field else error.get("msg", "invalid"))
    # Not capitalised: most sentences start with a field's name, which is lower case.
    return "; ".join(parts) + "."


def _validate(fields: dict[str, Any]) -> SearchRequest:
    try:
        return SearchRequest.model_validate(fields)
    except ValidationError as exc:
        raise BadRequest(validation_sentence(exc)) from exc


def _limited(request: Request, max_bytes: int) -> Request:
    """The same request, but reading more than `max_bytes` of body raises 413 (chunked uploads
    carry no Content-Length to check up front)."""
    received = 0
    upstream = request.receive

    async def receive():
        nonlocal received
        message = await upstream()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise PayloadTooLarge(f"The request is larger than this gateway accepts "
                                      f"({byte_size(max_bytes)} at most for a query).")
        return message

    return Request(request.scope, receive)


async def _parse_json(request: Request, max_image_bytes: int, max_total: int) -> SearchQuery:
    body = await request.body()
    try:
        fields = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    if not isinstance(fields, dict):
        raise BadRequest("The request body must be a JSON object with the search fields.")
    parsed = _validate(fields)
    image = decode_base64_image(parsed.image_base64, max_image_bytes) if parsed.image_base64 else None
    return _query(parsed, image, {}, max_image_bytes, max_total)


async def _parse_form(request: Request, max_image_bytes: int, max_total: int) -> SearchQuery:
    form = await request.form(max_files=len(_FILE_FIELDS), max_fields=len(_FORM_FIELDS) + 1,
                              max_part_size=64 * 1024)
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in _FILE_FIELDS or name in files:
                raise BadRequest(f"A file field must be named 'image' or 'image_1' to 'image_{TERMS_MAX}', each "
                                 f"once, not {name!r}.")
            content = await value.read(max_image_bytes + 1)
            if len(content) > max_image_bytes:
                raise PayloadTooLarge(f"The image {name!r} is larger than this gateway accepts "
                                      f"({byte_size(max_image_bytes)} at most per image).")
            if content:
                files[name] = content
                # Checked as each file arrives, so a query of many images stops at the cap, not after it.
                check_query_images([len(data) for data in files.values()], max_total)
        elif name == "image_base64":
            raise BadRequest("In a multipart query, send the image as the file field 'image'.")
        elif value != "":
            # Browsers send every form field, empty or not; empty means not given.
            fields[name] = value
    if "filters" in fields:
        fields["filters"] = parse_filters_json(fields["filters"])
    if "terms" in fields:
        try:
            fields["terms"] = json.loads(fields["terms"])
        except ValueError as exc:
            raise BadRequest("terms is not valid JSON: send a JSON list of terms.", code="invalid_request") from exc
    parsed = _validate(fields)
    # The file `image` is the query image unless a term names it.
    named = {term.image for term in parsed.terms or () if term.image}
    image = files.get("image") if "image" not in named else None
    return _query(parsed, image, files, max_image_bytes, max_total)


def _query(parsed: SearchRequest, image: bytes | None, files: dict[str, bytes], max_image_bytes: int,
           max_total: int) -> SearchQuery:
    terms = []
    for number, term in enumerate(parsed.terms or ()):
        value: str | bytes | None = getattr(term, term.source)
        if term.source == "image_base64":
            value = decode_base64_image(term.image_base64 or "", max_image_bytes)
        elif term.source == "image":
            if term.image not in files:
                raise BadRequest(f"terms.{number}: there is no file field {term.image!r} in this query (a "
                                 "term's image names a file of a multipart query; in JSON, send image_base64).")
            value = files[term.image]
        kind = {"image_base64": "image"}.get(term.source, term.source)
        terms.append(QueryTerm(kind, value, term.weight))
    # Each image is within max_image_bytes by now; together they must be within the query's cap.
    check_query_images([len(image or b"")] + [len(t.value) for t in terms if t.kind == "image"], max_total)
    return SearchQuery(text=parsed.text, image=image, image_url=parsed.image_url, photo_id=parsed.photo_id,
                       weight=parsed.weight, top_k=parsed.top_k, min_score=parsed.min_score,
                       filters=parsed.filters, offset=parsed.offset, collapse=parsed.collapse, terms=terms,
                       mode=parsed.mode, fusion=parsed.fusion, rrf_k=parsed.rrf_k, alpha=parsed.alpha,
                       min_relevance=parsed.min_relevance)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search photos by text, image, image URL, a stored photo, or a mix",
    description="Send JSON, or multipart/form-data with the query image as the file field `image` and the "
                "other fields as form fields. Text and image are combined by `weight` (the image's share). "
                "A `photo_id` query returns that photo itself first (score 1), then its neighbours.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _SEARCH_SCHEMA},
        "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
    }}},
)
async def search(request: Request, response: Response, services: ServicesDep,
                 settings: SettingsDep) -> dict[str, Any]:
    # Each image is limited (max_image_bytes), and so are a query's images together (max_query_bytes, so
    # that a query of several terms' images is not held to one image's allowance); the body is limited to
    # the total: as raw files in a form, as base64 (4/3 of it) in JSON, plus room for the other fields.
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # A form without a file (an HTML form, curl -d) is urlencoded; it carries the same fields.
    form = content_type in ("multipart/form-data", "application/x-www-form-urlencoded")
    max_total = settings.query_bytes_limit
    max_body = (max_total if form else max_total * 4 // 3) + 256 * 1024
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        raise PayloadTooLarge(f"The request is larger than this gateway accepts for a query ({byte_size(max_body)} "
                              f"at most: images of {byte_size(max_total)} in all, each at most "
                              f"{byte_size(settings.max_image_bytes)}).")
    request = _limited(request, max_body)
    if form:
        query = await _parse_form(request, settings.max_image_bytes, max_total)
    elif content_type in ("application/json", ""):
        query = await _parse_json(request, settings.max_image_bytes, max_total)
    else:
        raise BadRequest(f"Send the query as application/json or multipart/form-data, not {content_type!r}.",
                         code="unsupported_media_type", status_code=415)
    # HTTP's own way to ask for a fresh answer: the store searches even if the gateway kept this answer.
    query.fresh = "no-cache" in request.headers.get("cache-control", "").lower()
    query.mode = query.mode or settings.search_mode
    query.relevance_sample = settings.relevance_sample
    answer = await run_search(services, query)
    answer["results"] = [sign_urls(result, request) for result in answer["results"]]
    response.headers["Server-Timing"] = server_timing(answer["timings"], answer["cached"])
    return answer


def server_timing(timings: dict[str, float], cached: bool = False) -> str:
    """The timings as a Server-Timing header, which browsers' developer tools show per request."""
    entries = []
    for name, value in timings.items():
        entry = f"{name.removesuffix('_ms')};dur={value}"
        if cached and name == "store_ms":
            entry += ';desc="kept answer"'
        entries.append(entry)
    return ", ".join(entries)
