"""The test helpers end what they start: a test run that is interrupted (SIGTERM from a CI runner, Ctrl-C)
leaves no service process behind, whether the service came from tests.support or from tools.stack's
Stack (the end-to-end and fault tests' stacks), and whatever children the service had made itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A service that starts a child of its own (as a Celery worker does) before it answers HTTP.
SERVICE = """
import http.server, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""

# The interrupted test run: a private Redis, a service through tests.support, one service through a
# Stack; it prints its pid once all of them answer, then waits to be signalled.
RUN = """
import json, os, sys, time
from pathlib import Path
from tests.support import free_port, redis_server, service_process
from tools.stack import Stack

workdir, service = Path(sys.argv[1]), sys.argv[2]
samples = workdir / "samples"
samples.mkdir()
(samples / "photos.tsv").write_text("photo_id\\n")
with redis_server(workdir) as redis_url:
    port = free_port()
    with service_process([service, str(port)], f"http://127.0.0.1:{port}/", workdir / "service.log"):
        stack = Stack(env={"REDIS_URL": redis_url, "SAMPLES_DIR": str(samples), "SAMPLES_PORT": str(free_port())},
                      log_dir=workdir / "logs", run_dir=workdir / "run", only=["samples"])
        stack.start(timeout=60)
        print(json.dumps({"pid": os.getpid()}), flush=True)
        time.sleep(600)
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _descendants(pid: int) -> set[int]:
    seen: set[int] = set()
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if child not in seen:
            seen.add(child)
            todo += _children(child)
    return seen


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_test_run_leaves_no_service_behind(tmp_path, sig):
    service = tmp_path / "service.py"
    service.write_text(SERVICE)
    run = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), str(service)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    started: set[int] = set()
    try:
        line = "-"
        while line and not line.startswith("{"):  # the stack prints a line per service it starts
            line = run.stdout.readline()
        assert line, f"the test run did not start its services:\n{run.stderr.read()}"
        assert json.loads(line)["pid"] == run.pid
        # Redis, the service and its own child, the stack's service: four processes at least.
        deadline = time.monotonic() + 10
        while len(started := _descendants(run.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(started) >= 4, [_describe(pid) for pid in started]
        run.send_signal(sig)
        run.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (left := [pid for pid in started if _running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"left running after {sig.name}: {[_describe(pid) for pid in left]}"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in started:  # what a failing run left behind must not outlive this test either
            if _running(pid):
                os.kill(pid, signal.SIGKILL)

