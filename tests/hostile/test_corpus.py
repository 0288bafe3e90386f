"""Every request of the hostile corpus against the real services: each gets a 4xx (or the answer its
row allows, never a 5xx), every service stays up and answers its health check, memory comes back
near where it was, and nothing stored is lost. The test prints the table of case -> status."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.hostile import rawhttp
from tests.hostile.corpus import CASES, Case

HEALTH = {"api": "/healthz", "embedder": "/readyz", "store": "/ping"}
# Generous: the corpus decodes a few images and parses some MiB of bodies; a leak of a body per
# request, or a decoded bomb, would be far above this.
RSS_GROWTH_MIB = 100


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _with_ports(value, store_port: str):
    return json.loads(json.dumps(value).replace("{store_port}", store_port))


def send(case: Case, base_url: str, store_port: str, client: httpx.Client) -> tuple[int | str, str]:
    """(status or rawhttp.CLOSED/OPEN, the error code or first words of the body)."""
    if case.raw is not None:
        return case.raw(base_url), ""
    request = dict(case.request)
    method, path = request.pop("method"), request.pop("path")
    if "json" in request:
        request["json"] = _with_ports(request["json"], store_port)
    try:
        response = client.request(method, base_url + path, **request)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return rawhttp.CLOSED, type(exc).__name__
    try:
        detail = response.json()["error"]["code"]
    except Exception:
        detail = response.text[:40].replace("\n", " ")
    return response.status_code, detail


def _acceptable(case: Case, status: int | str) -> bool:
    if isinstance(status, str):
        return status == rawhttp.CLOSED and case.allow_closed
    low, high = case.expect
    return low <= status <= high and status < 500


def test_corpus_answers_4xx_and_loses_nothing(hostile_stack):
    stack = hostile_stack
    store_port = str(urlsplit(stack.urls["store"]).port)
    store = stack.store()
    try:
        rows_before = store.count()
    finally:
        store.close()
    rss_before = {name: rss_mib(pid) for name, pid in stack.pids.items()}

    results = []
    with httpx.Client(timeout=30, headers={"X-API-Key": "hostile-key"}) as client:
        for case in CASES:
            status, detail = send(case, stack.urls[case.target], store_port, client)
            results.append((case, status, detail))

    width = max(len(case.name) for case in CASES)
    print(f"\nhostile corpus: {len(CASES)} requests")
    for case, status, detail in results:
        mark = "ok " if _acceptable(case, status) else "BAD"
        print(f"  {mark} {case.target:<8} {case.name:<{width}} -> {status} {detail}")

    with httpx.Client(timeout=10) as client:
        health = {name: client.get(url + HEALTH[name]).status_code for name, url in stack.urls.items()}
    rss_after = {name: rss_mib(pid) for name, pid in stack.pids.items()}
    for name in stack.pids:
        print(f"  rss {name}: {rss_before[name]:.0f} MiB -> {rss_after[name]:.0f} MiB")
    store = stack.store()
    try:
        rows_after = store.count()
    finally:
        store.close()

    bad = [(case.name, status, detail) for case, status, detail in results if not _acceptable(case, status)]
    assert not bad, f"hostile requests answered wrongly (logs in {stack.log_dir}): {bad}"
    assert len(CASES) >= 40
    assert health == {"api": 200, "embedder": 200, "store": 200}
    assert all(process.poll() is None for process in stack.processes.values())
    grown = {name: rss_after[name] - rss_before[name] for name in rss_before}
    assert all(growth < RSS_GROWTH_MIB for growth in grown.values()), grown
    assert rows_after == rows_before > 0
