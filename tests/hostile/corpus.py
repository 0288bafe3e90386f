"""The hostile corpus: one row per request, with the service it targets and the answers allowed.

A row's `request` is the httpx arguments (method, path, and json / content / data / files / params /
headers), or `raw`, a function of the service's base URL for what httpx will not send. `expect` is
the range of statuses a user may see; any 5xx is a failure whatever the range. A raw sender may
also report that the server closed the connection (`rawhttp.CLOSED`), which `allow_closed` permits.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.hostile import payloads, rawhttp
from tests.hostile.conftest import API_MAX_IMAGE_BYTES, BODY_TIMEOUT_S, KEY

CLIENT_ERROR = (400, 499)
# A request that is strange but valid (an SQL-looking value is just text): any answer but a 5xx.
NOT_5XX = (200, 499)
WRITE = {"X-API-Key": KEY}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    target: str                      # "api" (the port 8000 contract), "embedder" or "store"
    request: dict[str, Any] = field(default_factory=dict)
    raw: Callable[[str], int | str] | None = None
    expect: tuple[int, int] = CLIENT_ERROR
    allow_closed: bool = False


def _search(body: Any, **kw) -> dict[str, Any]:
    return {"method": "POST", "path": "/v1/search", "json": body, **kw}


def _search_text(text: str) -> dict[str, Any]:
    """A JSON body written by hand: NaN, Infinity, 1e309 and lone surrogates are not in httpx's JSON."""
    return {"method": "POST", "path": "/v1/search", "content": text.encode("utf-8", "surrogatepass"),
            "headers": JSON}


def _search_image(data: bytes, name: str = "q.jpg", kind: str = "image/jpeg") -> dict[str, Any]:
    return {"method": "POST", "path": "/v1/search", "files": {"image": (name, data, kind)}}


def _embed_image(data: bytes) -> dict[str, Any]:
    return {"method": "POST", "path": "/v1/embed/image", "files": [("images", ("x", data, "image/png"))]}


def _photo(photo_id: str) -> dict[str, Any]:
    return {"method": "GET", "path": "/v1/photos/" + photo_id}


def _trickle_body(url: str, path: str) -> int | str:
    """A JSON body declared as 4 KiB and sent a byte every 0.2 s: answered 408 once the body timeout
    has passed, long before the body could end."""
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 4096\r\n\r\n").encode()
    status, _ = rawhttp.trickle(url, head, b'{"text": "' + b"a" * 4000, every=0.2, budget=BODY_TIMEOUT_S + 5)
    return status


def _trickle_headers(url: str) -> int | str:
    """Headers sent a byte every 0.2 s, never ending: answered 408 once the header timeout has passed."""
    status, _ = rawhttp.trickle(url, b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 1000,
                                every=0.2, budget=BODY_TIMEOUT_S + 5)
    return status


def _idle(url: str) -> int | str:
    """A connection opened and left silent: closed (408) once the header timeout has passed."""
    return rawhttp.wait_silent(url, budget=BODY_TIMEOUT_S + 5)


DEEP = payloads.deep_json(5000)
SQL = "x' OR '1'='1'; DROP TABLE photos_hostile; --"

CASES: list[Case] = [
    # --- malformed and deeply nested JSON -------------------------------------------------------
    Case("json: not JSON", "api", _search_text("{'text': 'cat'")),
    Case("json: a bare array", "api", _search_text("[1, 2, 3]")),
    Case("json: invalid UTF-8", "api", {"method": "POST", "path": "/v1/search", "content": b'{"text": "\xff\xfe"}',
                                        "headers": JSON}),
    Case("json: nested 5000 deep in the body", "api", _search_text('{"text": "a", "filters": {"x": ' + DEEP + "}}")),
    Case("json: nested 5000 deep as the text", "api", _search_text('{"text": ' + DEEP + "}")),
    Case("json: nested 5000 deep, multipart filters", "api",
         {"method": "POST", "path": "/v1/search", "data": {"text": "a", "filters": '{"a": ' + DEEP + "}"}}),
    Case("json: nested 5000 deep, ?filters=", "api",
         {"method": "GET", "path": "/v1/photos/random", "params": {"filters": '{"a": ' + payloads.deep_json(3000)
                                                                             + "}"}}),
    Case("json: nested 5000 deep, ingest", "api",
         {"method": "POST", "path": "/v1/ingest", "content": ('{"photos": ' + DEEP + "}").encode(),
          "headers": {**JSON, **WRITE}}),
    Case("json: nested 5000 deep, embedder texts", "embedder",
         {"method": "POST", "path": "/v1/embed/text", "content": ('{"texts": ' + DEEP + "}").encode(),
          "headers": JSON}),
    Case("json: wrong content type", "api", {"method": "POST", "path": "/v1/search", "content": b"text=cat",
                                             "headers": {"Content-Type": "text/xml"}}),
    # --- out-of-range and non-finite numbers ------------------------------------------------------
    Case("number: top_k NaN", "api", _search_text('{"text": "cat", "top_k": NaN}')),
    Case("number: top_k 1e309", "api", _search_text('{"text": "cat", "top_k": 1e309}')),
    Case("number: top_k -1", "api", _search({"text": "cat", "top_k": -1})),
    Case("number: top_k 10**30", "api", _search_text('{"text": "cat", "top_k": 1000000000000000000000000000000}')),
    Case("number: weight Infinity", "api", _search_text('{"text": "cat", "weight": Infinity}')),
    Case("number: weight -Infinity", "api", _search_text('{"text": "cat", "weight": -Infinity}')),
    Case("number: min_score NaN", "api", _search_text('{"text": "cat", "min_score": NaN}')),
    Case("number: offset 10**9", "api", _search({"text": "cat", "offset": 10**9})),
    Case("number: filter value NaN", "api", _search_text('{"text": "cat", "filters": {"photo_width": {">": NaN}}}')),
    Case("number: facet limit 10**20", "api", {"method": "GET", "path": "/v1/facets/photo_location_country",
                                               "params": {"limit": str(10**20)}}),
    # --- NUL bytes and lone surrogates ------------------------------------------------------------
    Case("text: NUL bytes", "api", _search({"text": "cat\x00\x00dog"}), expect=NOT_5XX),
    Case("text: lone surrogate", "api", _search_text('{"text": "cat \\ud800 dog"}')),
    Case("text: lone surrogate, embedder", "embedder",
         {"method": "POST", "path": "/v1/embed/text", "content": b'{"texts": ["ok", "bad \\udfff"]}',
          "headers": JSON}),
    Case("id: lone surrogate", "api", _search_text('{"photo_id": "seed-\\ud800"}')),
    Case("id: NUL byte", "api", _search({"photo_id": "seed-1\x00"})),
    Case("filter: lone surrogate value", "api",
         _search_text('{"text": "cat", "filters": {"photo_location_country": "\\udc00"}}')),
    Case("filter: NUL in value", "api", _search({"text": "cat", "filters": {"photo_location_country": "Peru\x00"}}),
         expect=NOT_5XX),
    # --- huge bodies ----------------------------------------------------------------------------
    Case("size: body over the limit (declared)", "api",
         {"method": "POST", "path": "/v1/search", "content": b"{" + b" " * (API_MAX_IMAGE_BYTES * 4) + b"}",
          "headers": JSON}),
    Case("size: endless chunked body, gateway", "api",
         raw=lambda url: rawhttp.endless_chunked(url, "/v1/search", JSON, give_up_after=8 * API_MAX_IMAGE_BYTES),
         allow_closed=True),
    Case("size: endless chunked body, embedder", "embedder",
         raw=lambda url: rawhttp.endless_chunked(url, "/v1/embed/image", JSON, give_up_after=64 << 20),
         allow_closed=True),
    Case("size: endless chunked body, store", "store",
         raw=lambda url: rawhttp.endless_chunked(url, "/?query=SELECT%201", {}, give_up_after=16 << 20),
         allow_closed=True),
    Case("size: 100000 texts", "embedder", {"method": "POST", "path": "/v1/embed/text",
                                            "json": {"texts": ["a"] * 100_000}}),
    Case("size: text of 1 MB", "api", _search({"text": "a" * 1_000_000})),
    # --- images that are bombs, or not images -------------------------------------------------------
    Case("image: PNG claiming 100000x100000", "api", _search_image(payloads.png_bomb(), "q.png", "image/png")),
    Case("image: JPEG claiming 65000x65000", "api", _search_image(payloads.jpeg_bomb())),
    Case("image: GIF claiming 65535x65535", "api", _search_image(payloads.gif_bomb(), "q.gif", "image/gif")),
    Case("image: GIF of 400 frames", "api", _search_image(payloads.many_frame_gif(), "q.gif", "image/gif"),
         expect=NOT_5XX),
    Case("image: SVG posing as a JPEG", "api", _search_image(payloads.SVG)),
    Case("image: PDF posing as a JPEG", "api", _search_image(payloads.PDF)),
    Case("image: PNG bomb, embedder", "embedder", _embed_image(payloads.png_bomb())),
    Case("image: truncated JPEG, embedder", "embedder", _embed_image(payloads.JPEG[:60])),
    Case("image: base64 bomb as JSON", "api", _search({"image_base64": "iVBORw0KGgo" + "A" * 1000})),
    # --- SSRF through image_url (loopback targets only; the rest is test_ssrf.py, before connecting) ---
    Case("ssrf: the store's own port", "api", _search({"image_url": "http://127.0.0.1:{store_port}/?query=SELECT%201"})),
    Case("ssrf: localhost by name", "api", _search({"image_url": "http://localhost:{store_port}/ping"})),
    Case("ssrf: decimal IP 2130706433", "api", _search({"image_url": "http://2130706433:{store_port}/ping"})),
    Case("ssrf: octal IP 0177.0.0.1", "api", _search({"image_url": "http://0177.0.0.1:{store_port}/ping"})),
    Case("ssrf: IPv6-mapped IPv4", "api", _search({"image_url": "http://[::ffff:127.0.0.1]:{store_port}/ping"})),
    Case("ssrf: file:// URL", "api", _search({"image_url": "file:///etc/passwd"})),
    Case("ssrf: gopher:// URL", "api", _search({"image_url": "gopher://127.0.0.1:6379/_FLUSHALL"})),
    # --- SQL-looking filters and field names -----------------------------------------------------------
    Case("sql: filter value", "api", _search({"text": "cat", "filters": {"photo_location_country": SQL}}),
         expect=NOT_5XX),
    Case("sql: filter field name", "api", _search({"text": "cat", "filters": {"1=1; DROP TABLE x; --": "a"}})),
    Case("sql: filter operator", "api",
         _search({"text": "cat", "filters": {"photo_width": {"> 0 OR 1=1 --": 1}}})),
    Case("sql: ?filters= field name", "api", {"method": "GET", "path": "/v1/photos/random",
                                              "params": {"filters": json.dumps({"id`; DROP": "x"})}}),
    Case("sql: facet field", "api", {"method": "GET", "path": "/v1/facets/photo_id) FROM system.tables --"}),
    Case("sql: two statements on GET", "store",
         {"method": "GET", "path": "/", "params": {"query": "SELECT 1; DROP TABLE photos_hostile"}}),
    Case("sql: store syntax error", "store", {"method": "POST", "path": "/", "content": b"SELEC 1 FROM ((("}),
    # --- path tricks in ids --------------------------------------------------------------------------
    Case("id: ../", "api", _photo("../../etc/passwd")),
    Case("id: %2e%2e", "api", _photo("%2e%2e/%2e%2e/v1/stats")),
    Case("id: 60000 characters", "api", _photo("a" * 60_000)),
    Case("id: unicode", "api", _photo("séed-1-\u202e\U0001f600")),
    Case("id: job id ../", "api", {"method": "GET", "path": "/v1/jobs/..%2F..%2Fetc"}),
    Case("id: search photo_id too long", "api", _search({"photo_id": "a" * 10_000})),
    # --- protocol ------------------------------------------------------------------------------------
    Case("http: header of 200 KB", "api", {"method": "GET", "path": "/v1/stats", "headers": {"X-Big": "a" * 200_000}},
         allow_closed=True),
    Case("http: header of 200 KB, embedder", "embedder",
         {"method": "GET", "path": "/v1/model", "headers": {"X-Big": "a" * 200_000}}, allow_closed=True),
    Case("slow: headers trickled, gateway", "api", raw=lambda url: _trickle_headers(url)),
    Case("slow: headers trickled, embedder", "embedder", raw=lambda url: _trickle_headers(url)),
    Case("slow: connection that sends nothing", "api", raw=_idle),
    Case("slow: body trickled, gateway", "api", raw=lambda url: _trickle_body(url, "/v1/search")),
    Case("slow: body trickled, embedder", "embedder", raw=lambda url: _trickle_body(url, "/v1/embed/text")),
    Case("http: garbage request line", "api", raw=lambda url: rawhttp.raw_request(url, b"\x16\x03\x01\x00\xa5\x01\r\n\r\n"),
         allow_closed=True),
    Case("http: Content-Length and chunked", "api", raw=lambda url: rawhttp.raw_request(
        url, b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
         allow_closed=True),
]
