"""`make search` (tools/search.py) against the gateway with fake adapters on a real port: the terms it
sends, the table it prints, and its sentences when a query is refused or the gateway is away."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from services.api.main import create_app
from tests.unit.api_support import GatewayFakes, make_settings, text_vector
from tools import search


@pytest.fixture
def fakes() -> GatewayFakes:
    fakes = GatewayFakes()
    fakes.store.add("beach-1", text_vector("a beach"), photo_url="https://unsplash.test/photos/beach-1",
                    photographer_first_name="Ana", photographer_last_name="Lopez")
    return fakes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gateway_url(fakes):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(make_settings(), services=fakes.services()),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def test_prints_a_table_with_score_photographer_and_link(gateway_url, capsys):
    assert search.main(["a beach", "--top-k", "3", "--api-url", gateway_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "score", "photo", "photographer", "link"]
    assert lines[1].split() == ["1", "1.000", "beach-1", "Ana", "Lopez", "https://unsplash.test/photos/beach-1"]
    assert len(lines) == 1 + 3 + 2 and lines[4].startswith("3 results in") and "random weights" in lines[5]


def test_terms_from_the_options(gateway_url, fakes, tmp_path, capsys):
    image = tmp_path / "query.jpg"
    image.write_bytes(b"dog")
    code = search.main(["--plus", "a beach", "--minus", "people", "--like", "red", "--unlike", "cat",
                        "--image", str(image), "--api-url", gateway_url])
    assert code == 0, capsys.readouterr().err
    assert fakes.store.stored_terms == [("red", 1.0), ("cat", -1.0)]
    assert sorted(fakes.embedder.calls) == [("images", 1), ("texts", 2)]  # one call per kind


def test_refusals_and_an_absent_gateway_are_sentences(gateway_url, capsys):
    assert search.main(["--like", "no-such-photo", "--api-url", gateway_url]) == 1
    assert "No photo with photo_id 'no-such-photo'" in capsys.readouterr().err
    assert search.main(["--api-url", gateway_url]) == 1
    assert "say what to search for" in capsys.readouterr().err
    assert search.main(["--image", "/nonexistent/x.jpg", "--api-url", gateway_url]) == 1
    assert "cannot read the image /nonexistent/x.jpg" in capsys.readouterr().err
    assert search.main(["sky", "--api-url", f"http://127.0.0.1:{_free_port()}"]) == 2
    assert "Could not reach the gateway" in capsys.readouterr().err
