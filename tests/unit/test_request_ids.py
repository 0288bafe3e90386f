"""services/common/request_ids.py and the middleware in services/common/http.py: one id per request,
taken from a sane caller, answered in the header and in error bodies, and on every log line."""
from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common import request_ids
from services.common.errors import BadRequest, error_body
from services.common.http import LOG_FORMAT, configure_logging, install_error_handlers, install_request_ids


@pytest.mark.parametrize("incoming", ["abc-123", "0f3c9a7e4b2d4c1e9f8a7b6c5d4e3f21", "job-42.batch/7", "trace=1:2@x+y"])
def test_a_plain_token_from_the_caller_is_kept(incoming):
    assert request_ids.accept(incoming) == incoming


@pytest.mark.parametrize("incoming", [None, "", "two words", "forged\n2026-01-01 INFO line", "x" * 129, "ünï"])
def test_anything_else_gets_a_new_id(incoming):
    made = request_ids.accept(incoming)
    assert made != incoming and len(made) == 32 and made.isalnum()


def test_error_bodies_carry_the_current_id():
    assert error_body("x", "y") == {"error": {"code": "x", "message": "y"}}
    with request_ids.bound("req-1"):
        assert error_body("x", "y") == {"error": {"code": "x", "message": "y", "request_id": "req-1"}}


def test_every_log_record_gets_the_id_or_a_dash():
    configure_logging("INFO")
    formatter = logging.Formatter(LOG_FORMAT)
    logger = logging.getLogger("test.request_ids")
    outside = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "hello", (), None)
    with request_ids.bound("req-2"):
        inside = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "hello", (), None)
    assert "[-] hello" in formatter.format(outside)
    assert "[req-2] hello" in formatter.format(inside)


def app_with_routes() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    seen: dict[str, str | None] = {}

    @app.get("/ok")
    async def ok():
        seen["ok"] = request_ids.current()
        logging.getLogger("test.route").warning("handling ok")
        return {"fine": True}

    @app.get("/bad")
    async def bad():
        raise BadRequest("Send a better value.")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    install_request_ids(app)
    app.state.seen = seen
    return app


def test_the_callers_id_is_current_in_the_route_and_answered(caplog):
    app = app_with_routes()
    with TestClient(app) as client, caplog.at_level(logging.INFO):
        response = client.get("/ok", headers={"X-Request-ID": "from-caller-7"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "from-caller-7"
    assert app.state.seen["ok"] == "from-caller-7"
    lines = [(r.name, r.request_id, r.getMessage()) for r in caplog.records]
    assert ("test.route", "from-caller-7", "handling ok") in lines
    assert any(name == "access" and rid == "from-caller-7" and message.startswith("GET /ok 200 ")
               for name, rid, message in lines)


def test_a_new_id_is_made_answered_and_quoted_in_error_bodies():
    with TestClient(app_with_routes(), raise_server_exceptions=False) as client:
        bad = client.get("/bad")
        boom = client.get("/boom", headers={"X-Request-ID": "bad id with spaces"})
        missing = client.get("/nowhere")
    for response, status in ((bad, 422), (boom, 500), (missing, 404)):
        assert response.status_code == status
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32 and response.json()["error"]["request_id"] == request_id
    assert boom.json()["error"]["message"] == "The service hit an unexpected error; it has been logged."
    assert len({bad.headers["x-request-id"], boom.headers["x-request-id"], missing.headers["x-request-id"]}) == 3
