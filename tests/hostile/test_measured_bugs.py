"""The three hostile inputs that used to be answered 500, each with the sentence a caller now gets.

- JSON nested thousands of levels deep (a search body, multipart `filters`, `?filters=`): 422;
- a text holding a lone surrogate sent to the embedder: 422 naming the item;
- an embedder that answers 200 with a malformed body: the gateway answers 502 with a sentence.

The gateway runs in process with the shared fakes, except for the embedder in the last case: the
real `AsyncEmbedderClient` talking HTTP to a local server that answers badly.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app
from services.common.embedder_client import AsyncEmbedderClient, EmbedderClient, EmbedderFailed
from tests.fakes import DIM, MODEL
from tests.hostile.payloads import deep_json
from tests.unit.api_support import KEY, GatewayFakes, make_settings

DEPTH = 3000


def _error(response: httpx.Response) -> dict:
    return response.json()["error"]


@pytest.fixture
def gateway() -> TestClient:
    fakes = GatewayFakes()
    with TestClient(create_app(make_settings(), services=fakes.services()),
                    headers={"X-API-Key": KEY}) as client:
        yield client


@pytest.mark.parametrize("where", ["body", "multipart", "query", "ingest"])
def test_json_nested_thousands_deep_is_a_422_with_a_sentence(gateway, where):
    deep = deep_json(DEPTH)
    if where == "body":
        response = gateway.post("/v1/search", content='{"text": "cat", "filters": {"a": ' + deep + "}}",
                                headers={"Content-Type": "application/json"})
    elif where == "multipart":
        response = gateway.post("/v1/search", data={"text": "cat", "filters": '{"a": ' + deep + "}"})
    elif where == "ingest":  # a body FastAPI reads itself
        response = gateway.post("/v1/ingest", content='{"photos": ' + deep + "}",
                                headers={"Content-Type": "application/json"})
    else:
        response = gateway.get("/v1/photos/random", params={"filters": '{"a": ' + deep + "}"})
    assert response.status_code == 422
    assert _error(response)["code"] == "too_deeply_nested"
    assert "nested too deeply" in _error(response)["message"]


def test_json_nested_a_few_levels_is_still_read(gateway):
    # Below the recursion limit the value is read and refused by the filter grammar, as before.
    response = gateway.post("/v1/search", json={"text": "cat", "filters": {"a": json.loads(deep_json(50))}})
    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_filter"


def test_a_lone_surrogate_is_refused_by_the_embedder_naming_the_item(hostile_stack):
    response = httpx.post(hostile_stack.urls["embedder"] + "/v1/embed/text",
                          content=b'{"texts": ["a cat", "a dog \\ud800 on a mat"]}',
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_text"
    assert _error(response)["message"].startswith("Text 1 holds a lone surrogate (U+D800")


_INFO = {"name": MODEL, "dim": DIM, "device": "cpu", "dtype": "float32", "fingerprint": "f00d",
         "random_weights": True, "image_size": 224, "max_text_tokens": 77}
_GOOD = [1.0] + [0.0] * (DIM - 1)
# Each body is answered with 200 to POST /v1/embed/text.
MALFORMED = {
    "not JSON": b"<html>502 Bad Gateway</html>",
    "a JSON list": b"[1, 2, 3]",
    "no vectors": json.dumps({"model": MODEL, "dim": DIM}).encode(),
    "wrong count": json.dumps({"model": MODEL, "dim": DIM, "vectors": [_GOOD, _GOOD]}).encode(),
    "wrong dim": json.dumps({"model": MODEL, "dim": DIM, "vectors": [_GOOD[:-1]]}).encode(),
    "dim not a number": json.dumps({"model": MODEL, "dim": "eight", "vectors": [_GOOD]}).encode(),
    "strings for numbers": json.dumps({"model": MODEL, "dim": DIM, "vectors": [["x"] * DIM]}).encode(),
    "NaN": b'{"model": "fake-clip", "dim": 8, "vectors": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}',
    "Infinity": b'{"model": "fake-clip", "dim": 8, "vectors": [[Infinity, 0, 0, 0, 0, 0, 0, 0]]}',
}


@pytest.fixture(scope="module")
def bad_embedder():
    """A local HTTP server posing as the embedder: good model info, then the body named by the path's
    first segment (`/<case>/v1/embed/text`), so one server serves every case."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's name)
            self._answer(json.dumps(_INFO).encode())

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            case = list(MALFORMED)[int(self.path.split("/")[1])]
            self._answer(MALFORMED[case])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_embedder_answer_is_a_502_with_a_sentence(bad_embedder, case):
    url = f"{bad_embedder}/{list(MALFORMED).index(case)}"
    with EmbedderClient(url) as client, pytest.raises(EmbedderFailed) as error:
        client.embed_texts(["a cat"])
    assert error.value.status_code == 502
    assert "malformed" in error.value.message

    fakes = GatewayFakes()
    fakes.embedder = AsyncEmbedderClient(url)
    with TestClient(create_app(make_settings(), services=fakes.services())) as gateway:
        response = gateway.post("/v1/search", json={"text": "a cat"})
    assert response.status_code == 502
    assert _error(response)["code"] == "embedder_malformed"
    assert "EMBEDDER_URL" in _error(response)["message"]
