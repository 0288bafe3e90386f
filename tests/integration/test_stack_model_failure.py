"""`make up` when the embedder's model cannot be loaded (the default model, offline, after an offline
`make demo`): it stops within seconds with a sentence that says what to set, instead of waiting out
its timeout and printing the embedder's log, and it stops what it started."""
from __future__ import annotations

import sys
import time

import pytest

from tests.support import free_port, redis_server
from tools import stack as stack_module
from tools.stack import Service, ServiceFailed, Stack

# The embedder's /readyz while it loads and once its load failed (services/embedder/service.py).
FAKE_EMBEDDER = """
import http.server, json, sys
code, message = sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _fake_embedder(code: str, message: str) -> Service:
    port = free_port()
    return Service("embedder", [sys.executable, "-c", FAKE_EMBEDDER, str(port), code, message],
                   ready_url=f"http://127.0.0.1:{port}/readyz")


def _stack(tmp_path, services: list[Service]) -> Stack:
    stack = Stack(log_dir=tmp_path / "logs", run_dir=tmp_path / "run")
    stack.services = services
    stack.ensure_redis = lambda: None  # Redis is not what these tests are about
    return stack


def test_a_model_that_is_still_loading_is_waited_for(tmp_path):
    stack = _stack(tmp_path, [_fake_embedder("model_loading", "The model 'x' is still loading; retry shortly.")])
    with pytest.raises(RuntimeError, match="embedder was not ready after 3 s") as failure:
        stack.start(timeout=3)
    assert not isinstance(failure.value, ServiceFailed)
    assert stack.running() == {}


def test_a_model_that_failed_to_load_stops_make_up_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module, "OFFLINE_DEMO_MODEL", tmp_path / "no-demo-here")
    reason = "The embedder's models could not be loaded: The model 'x' is neither a local folder nor in the cache."
    stack = _stack(tmp_path, [_fake_embedder("model_failed", reason)])
    started = time.monotonic()
    with pytest.raises(ServiceFailed) as failure:
        stack.start(timeout=60)
    assert time.monotonic() - started < 15
    message = str(failure.value)
    assert reason.rstrip(".") in message and "Set EMBEDDER_MODEL" in message and "\n" not in message
    assert stack.running() == {}, "the embedder that will never be ready was left running"


def test_make_up_after_an_offline_demo_says_how_to_use_its_model(tmp_path, monkeypatch):
    """The real embedder, on the default model, offline and with an empty model cache."""
    demo_model = tmp_path / "clip-random-b32"
    demo_model.mkdir()
    (demo_model / "RANDOM_WEIGHTS").write_text("")
    monkeypatch.setattr(stack_module, "OFFLINE_DEMO_MODEL", demo_model)
    ports = {name: free_port() for name in ("store", "embedder", "api", "ui")}
    with redis_server(tmp_path) as redis_url:
        env = {
            "REDIS_URL": redis_url,
            "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(tmp_path / "store"),
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
            "EMBEDDER_MODEL": "openai/clip-vit-base-patch32",
            "EMBEDDER_TEXT_MODEL": "same",
            "API_URL": f"http://127.0.0.1:{ports['api']}",
            "UI_PORT": str(ports["ui"]),
            "HF_HOME": str(tmp_path / "hf-home"),  # nothing cached: the model cannot be found
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=tmp_path / "logs", run_dir=tmp_path / "run", only=["store", "embedder"])
        started = time.monotonic()
        try:
            with pytest.raises(ServiceFailed) as failure:
                stack.start(timeout=90, leave_running=True)
            took = time.monotonic() - started
        finally:
            left = stack.running()
            stack.stop()
    message = str(failure.value)
    assert took < 60, f"make up waited {took:.0f} s for an embedder that had already failed"
    assert "openai/clip-vit-base-patch32" in message and "Traceback" not in message
    assert f"EMBEDDER_MODEL={demo_model} STORE_TABLE=photos_random_demo make up" in message
    assert left == {}, f"left running after the failure: {left}"
