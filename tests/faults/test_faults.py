"""Faults during an ingestion: each breaks one part of a whole running system and checks what a user sees.

While `make ingest` submits 300 generated photos and a stream of searches runs, one fault strikes:
a worker's pool child is SIGKILLed; the main worker process (with its children) is SIGKILLed and
started again; the embedder is down for 20 s; the store restarts; Redis restarts (with its
append-only file, as a broker needs). After each: the ingest command finishes with no photo failed,
the table holds each photo exactly once, searches during the outage were answered (200, or 503 with
Retry-After: never a 500, never a hang past the timeout) and searches afterwards succeed.

Each fault gets its own stack (Redis, store, embedder on the tiny random CLIP, workers, gateway).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import ROOT
from tests.faults.conftest import OUTCOMES
from tests.faults.fault_stack import API_KEY, FaultStack
from tests.support import spawn

# The workers' visibility timeout here: short, to keep the suite fast; FAULTS_VISIBILITY_TIMEOUT_S=60
# shows the production default's timing.
VISIBILITY_TIMEOUT_S = int(os.environ.get("FAULTS_VISIBILITY_TIMEOUT_S", "8"))
SEARCH_TIMEOUT_S = 15  # the gateway's own timeouts are 5 s: anything slower is a hang
EMBEDDER_DOWN_S = 20


@dataclass
class Watch:
    """Searches in a loop, and how many batches are done, each with its time."""

    stack: FaultStack
    answers: list[tuple[float, int | str, str | None]] = field(default_factory=list)
    progress: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=SEARCH_TIMEOUT_S + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=SEARCH_TIMEOUT_S, headers={"X-API-Key": API_KEY}) as client:
            while not self._stop.is_set():
                # A new text each time: the gateway's text vector cache would answer a repeated one
                # without the embedder, and each search must cross every part the faults break.
                text = f"a red square {len(self.answers)}"
                try:
                    response = client.post(f"{self.stack.api_url}/v1/search", json={"text": text, "top_k": 5})
                    self.answers.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))
                except httpx.HTTPError as exc:
                    self.answers.append((time.monotonic(), type(exc).__name__, None))
                done = self.stack.batches_done()
                if done is not None:
                    self.progress.append((time.monotonic(), done))
                self._stop.wait(0.3)

    def recovered_at(self, since: float) -> float | None:
        """When, after `since`, a batch had finished and a search had succeeded."""
        before = max((done for t, done in self.progress if t <= since), default=0)
        batch = next((t for t, done in self.progress if t > since and done > before), None)
        search = next((t for t, status, _ in self.answers if t > since and status == 200), None)
        return max(batch, search) if batch and search else None


def kill_worker_child(stack: FaultStack) -> None:
    children = stack.worker_children()
    assert children, "the worker has no pool children to kill"
    os.kill(children[0], signal.SIGKILL)


def kill_and_restart_worker(stack: FaultStack) -> None:
    stack.kill("worker")  # the main process and its children, as an OOM kill or container restart does
    stack.start_service("worker")


def embedder_down(stack: FaultStack) -> None:
    stack.kill("embedder")
    time.sleep(EMBEDDER_DOWN_S)
    stack.start_service("embedder")


def restart_store(stack: FaultStack) -> None:
    stack.signal_group("store", signal.SIGTERM)
    stack.stack.processes["store"].wait(timeout=30)
    time.sleep(1)
    stack.start_service("store")


FAULTS = {
    "worker child SIGKILL": kill_worker_child,
    "worker main SIGKILL + restart": kill_and_restart_worker,
    f"embedder down {EMBEDDER_DOWN_S} s": embedder_down,
    "store restart": restart_store,
    "redis restart (appendonly)": lambda stack: stack.restart_redis(),
}


def _wait_for_batches(stack: FaultStack, ingest: subprocess.Popen, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (stack.batches_done() or 0) < count:
        assert ingest.poll() is None, "the ingest command ended before the fault"
        assert time.monotonic() < deadline, f"fewer than {count} batches were done after {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_ingestion_and_searches_recover_from(fault, photo_set, tiny_model_dir, tmp_path):
    tsv, photos = photo_set
    log_dir = ROOT / "test-output" / "faults" / fault.split()[0] / fault.split()[1]
    stack = FaultStack(tmp_path, tiny_model_dir, log_dir, visibility_timeout_s=VISIBILITY_TIMEOUT_S)
    outcome = {"fault": fault, "outcome": "failed", "expected": photos}
    OUTCOMES.append(outcome)
    stack.start()
    watch = Watch(stack)
    ingest_log = open(log_dir / "ingest.log", "w")  # noqa: SIM115 (closed below)
    # Through tests.support.spawn: ended with the test run even if the run is interrupted.
    ingest = spawn(
        [sys.executable, "-m", "tools.ingest", str(tsv), "--api-url", stack.api_url, "--api-key", API_KEY,
         "--batch-size", "12", "--poll-interval", "0.5", "--stall-timeout", "45", "--timeout", "200"],
        cwd=ROOT, env=stack.env, stdout=ingest_log, stderr=subprocess.STDOUT)
    try:
        _wait_for_batches(stack, ingest, 4)
        watch.start()
        time.sleep(1)
        held = stack.held()
        FAULTS[fault](stack)
        over = time.monotonic()
        ingest.wait(timeout=220)
        done = time.monotonic()
        time.sleep(1)
        watch.stop()
        after = httpx.post(f"{stack.api_url}/v1/search", json={"text": "a blue circle", "top_k": 5},
                           headers={"X-API-Key": API_KEY}, timeout=SEARCH_TIMEOUT_S)
        total, distinct = stack.rows()
    finally:
        if ingest.poll() is None:
            ingest.kill()
        ingest_log.close()
        stack.stop()
    output = (log_dir / "ingest.log").read_text(errors="replace")
    recovered = watch.recovered_at(over)
    outcome.update(held=held, rows=total, distinct=distinct, done_s=round(done - over, 1),
                   recover_s=round(recovered - over, 1) if recovered else "never",
                   **{"503s": sum(1 for _, status, _ in watch.answers if status == 503)})

    # The fault struck while workers held batches: those are what must not be lost.
    assert held > 0, "no batch was in a worker's hands when the fault struck"
    assert ingest.returncode == 0, f"the ingest command failed:\n{output[-3000:]}\nlogs in {log_dir}"
    assert ", 0 failed, of" in output, output[-3000:]
    assert (total, distinct) == (photos, photos), f"{total} rows, {distinct} distinct, of {photos} photos"
    statuses = {status for _, status, _ in watch.answers}
    assert statuses <= {200, 503}, f"searches answered {statuses} (logs in {log_dir})"
    assert all(retry for _, status, retry in watch.answers if status == 503), "a 503 came without Retry-After"
    if FAULTS[fault] is embedder_down:
        assert outcome["503s"] > 0, "no search met the embedder's outage: the fault was not exercised"
    assert after.status_code == 200 and after.json()["results"], after.text
    assert recovered is not None, "no batch finished with a search answered after the fault"
    outcome["outcome"] = "recovered"
