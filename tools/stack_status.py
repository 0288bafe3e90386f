"""`make status`: one operator's table of the stack, whatever state it is in.

Per service: whether `make up` runs it (and its pid), whether its health URL answers, and its address.
Then the ingestion backlog (batches waiting in Redis and batches taken but not yet acknowledged), what
the store holds (photos, its dialect and vector index), which model the embedder runs where, and the
last backup in BACKUP_DIR (when, size, rows).
Anything that does not answer is shown as such: this command never ends in a traceback.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from services.backup import latest_backup
from tools.processes import alive, http_ok, port_open

# kombu's Redis transport: one list per queue (plus one per priority step when priorities are used)
# and a hash of the messages delivered to a worker but not yet acknowledged.
QUEUE = "ingest"
PRIORITY_SEPARATOR = "\x06\x16"
UNACKED_KEY = "unacked"
UNREACHABLE = "unreachable"
# /readyz error codes that mean "never", not "not yet": the embedder's model failed to load (while it
# loads it says "model_loading", and is waited for).
FAILED_READY_CODES = frozenset({"model_failed"})


@dataclass
class ServiceRow:
    name: str
    state: str
    health: str
    address: str


def service_state(pid: int | None, answers: bool) -> str:
    if pid is not None and alive(pid):
        return f"running (pid {pid})"
    return "answering (not ours)" if answers else "stopped"


def redact(url: str, origin_only: bool = False) -> str:
    """The URL without its password (a table someone may paste into a chat); its origin alone if asked."""
    parsed = urlparse(url)
    if origin_only:
        parsed = parsed._replace(path="", params="", query="", fragment="")
    if parsed.password is not None:
        parsed = parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@"))
    return parsed.geturl()


def service_rows(settings: dict[str, str], services: list, pids: dict[str, int]) -> list[ServiceRow]:
    """One row per part of the stack: state and pid, whether its health check answers, its address.
    `services` are those `make up` starts here (tools/stack.py), `pids` their recorded pids by name."""
    redis = urlparse(settings["REDIS_URL"])
    redis_up = port_open(redis.hostname or "127.0.0.1", redis.port or 6379)
    rows = [ServiceRow("redis", service_state(pids.get("redis"), redis_up), "ok" if redis_up else "no answer",
                       redact(settings["REDIS_URL"]))]
    local = {service.name: service for service in services}
    remote = {"store": f"{settings['STORE_URL']}/ping", "embedder": f"{settings['EMBEDDER_URL'].split(',')[0]}/readyz"}
    for name in ["samples", "store", "embedder", "worker", "api", "ui"]:
        service = local.get(name)
        if service is None and name not in remote:
            continue
        url = service.ready_url if service else remote[name]
        if url is None:
            # The workers have no health URL: `celery inspect ping` answers for them under compose.
            rows.append(ServiceRow(name, service_state(pids.get(name), False), "-",
                                   f"queue {QUEUE} at {redact(settings['REDIS_URL'])}"))
            continue
        answers = http_ok(url)
        state = service_state(pids.get(name), answers) if service else "elsewhere"
        rows.append(ServiceRow(name, state, "ok" if answers else "no answer", redact(url, origin_only=True)))
    return rows


def readiness(url: str) -> tuple[bool, str | None]:
    """(ready, why it never will be) of a health URL: a 2xx is ready; a 503 whose JSON error code is in
    FAILED_READY_CODES gives that error's sentence; anything else is "not yet"."""
    try:
        response = httpx.get(url, timeout=2.0, trust_env=False)  # local addresses: never through a proxy
    except httpx.HTTPError:
        return False, None
    if response.is_success:
        return True, None
    try:
        error = response.json().get("error") if response.status_code == 503 else None
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("code") in FAILED_READY_CODES:
        return False, str(error.get("message") or "it says it cannot start")
    return False, None


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 3.0) -> dict[str, Any] | None:
    """The JSON body of a 2xx answer, or None for anything else (down, refused, not JSON)."""
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
        if response.is_success:
            return response.json()
    except (httpx.HTTPError, ValueError):
        pass
    return None


def queue_counts(redis_url: str) -> dict[str, int] | None:
    """{"queued": batches waiting, "unacked": batches taken by a worker and not yet done}; None if down."""
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        keys = [QUEUE] + [key.decode() for key in client.scan_iter(f"{QUEUE}{PRIORITY_SEPARATOR}*")]
        queued = sum(client.llen(key) for key in keys)
        return {"queued": queued, "unacked": client.hlen(UNACKED_KEY)}
    except Exception:  # noqa: BLE001 (any failure of an optional probe reads as "unreachable")
        return None


def index_state(store_url: str, table: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The vector index's type and state, and how words are searched (`lexical`), asked of the store
    directly; None when it cannot be asked."""
    # clickhouse-connect logs a failed connection with its traceback; the table says "unreachable".
    driver_log = logging.getLogger("clickhouse_connect")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL + 1)
    try:
        from services.photostore import PhotoStore
        from services.photostore.lexical import lexical_status

        with PhotoStore(store_url, table, connect_timeout=2, query_timeout=5, **options) as store:
            return {**store.index_status(), "lexical": lexical_status(store)}
    except Exception:  # noqa: BLE001 (see queue_counts)
        return None
    finally:
        driver_log.setLevel(level)


DEFAULT_BACKUP_DIR = Path(__file__).resolve().parents[1] / "data" / "backups"


def last_backup(directory: str, table: str) -> dict[str, Any] | None:
    """The newest complete backup of `table` under `directory`: its folder, time, rows and bytes."""
    found = latest_backup(Path(directory).expanduser(), table)
    if found is None:
        return None
    path, manifest = found
    return {"path": str(path), "created_at": manifest.get("created_at"), "rows": manifest.get("rows"),
            "bytes": manifest.get("bytes")}


@dataclass
class Probes:
    """What the status table asks, replaceable in tests."""
    get_json: Callable[..., dict[str, Any] | None] = get_json
    queue_counts: Callable[[str], dict[str, int] | None] = queue_counts
    index_state: Callable[[str, str, dict[str, Any]], dict[str, Any] | None] = index_state
    last_backup: Callable[[str, str], dict[str, Any] | None] = last_backup


def gather(settings: dict[str, str], rows: list[ServiceRow], probes: Probes | None = None) -> dict[str, Any]:
    """Everything the table shows, as plain values (None where something did not answer)."""
    probes = probes or Probes()
    api_url = settings["API_URL"].rstrip("/")
    embedder_url = settings["EMBEDDER_URL"].split(",")[0].rstrip("/")
    keys = [key.strip() for key in settings.get("API_KEYS", "").split(",") if key.strip()]
    headers = {"X-API-Key": keys[0]} if keys else None
    options = {"index_type": settings.get("STORE_INDEX_TYPE") or None}
    stats = probes.get_json(f"{api_url}/v1/stats", headers=headers)
    # The table the gateway answers from (the offline demo's STORE_TABLE is set for its processes, not in
    # .env); .env's when the gateway does not answer.
    table = ((stats or {}).get("table") or {}).get("table") or settings.get("STORE_TABLE") or "photos"
    return {
        "services": rows,
        "queue": probes.queue_counts(settings["REDIS_URL"]),
        "stats": stats,
        "index": probes.index_state(settings["STORE_URL"], table, options),
        "model": probes.get_json(f"{embedder_url}/v1/model"),
        "reembed": probes.get_json(f"{api_url}/v1/reembed", headers=headers),
        "backup": probes.last_backup(settings.get("BACKUP_DIR") or str(DEFAULT_BACKUP_DIR),
                                     settings.get("STORE_TABLE") or "photos"),
    }


def model_names(model: dict[str, Any]) -> str:
    """The model that answers, and its separate text tower when there is one (an older embedder names
    none: its model embeds texts too), with how many languages that tower says it understands."""
    name, text_model = model.get("name"), model.get("text_model")
    if not text_model or text_model == name:
        return str(name)
    languages = model.get("languages")
    if not isinstance(languages, list) or not languages:
        return f"{name} + text: {text_model}"
    return f"{name} + text: {text_model} ({len(languages)} language{'s' if len(languages) != 1 else ''})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    def line(cells):
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * width for width in widths])] + [line(row) for row in rows]


def render(status: dict[str, Any]) -> str:
    """The table a person reads: services first, then the backlog, the store and the model."""
    lines = _table(["service", "state", "health", "address"],
                   [[row.name, row.state, row.health, row.address] for row in status["services"]])
    queue = status["queue"]
    lines.append("")
    if queue is None:
        lines.append(f"ingest queue     {UNREACHABLE} (Redis)")
    else:
        lines.append(f"ingest queue     {queue['queued']} batches waiting, {queue['unacked']} taken and not yet acknowledged")
    stats = status["stats"]
    if stats is None:
        lines.append(f"photos stored    {UNREACHABLE} (gateway)")
    else:
        table = stats.get("table") or {}
        where = f" in {table.get('database', '?')}.{table.get('table', '?')} ({table.get('dialect', '?')})" if table else ""
        lines.append(f"photos stored    {stats.get('photos', 0)}{where}")
    index = status["index"]
    if index is None:
        lines.append(f"vector index     {UNREACHABLE} (store)")
    else:
        reason = f", failed: {index['fail_reason']}" if index.get("fail_reason") else ""
        lines.append(f"vector index     {index.get('status')} (type {index.get('type') or '-'}{reason})")
        if index.get("lexical"):
            note = index["lexical"].get("note")
            lines.append(f"word search      index {index['lexical'].get('index')}{': ' + note if note else ''}")
    model = status["model"]
    if model is None:
        lines.append(f"embedder model   {UNREACHABLE} (embedder)")
    else:
        random = ", random weights" if model.get("random_weights") else ""
        lines.append(f"embedder model   {model_names(model)} on {model.get('device')} in {model.get('dtype')}{random}")
    lines.extend(reembed_lines(status.get("reembed")))
    if "backup" in status:
        lines.append(f"last backup      {backup_line(status['backup'])}")
    return "\n".join(lines) + "\n"


def reembed_lines(reembed: dict[str, Any] | None) -> list[str]:
    """The model that answers queries (the store's active table: `make reembed` changes it), and a
    re-embedding in progress, or one that failed."""
    if not reembed:
        return []
    active, job = reembed.get("active") or {}, reembed.get("job") or {}
    text = f" + text: {active['text_model']}" if active.get("text_model") else ""
    lines = [f"queries answered {active.get('model') or 'the embedder model'}{text} (table {active.get('table')})"]
    if job.get("state") == "running":
        eta = job.get("eta_s")
        lines.append(f"re-embedding     to {job.get('to_model')}: {job.get('done', 0)} of {job.get('total', 0)} "
                     f"photos, {float(job.get('rate') or 0):.1f} photos/s, "
                     f"ETA {'?' if eta is None else f'{eta:.0f} s'} (make reembed MODEL={job.get('to_model')} follows it)")
    elif job.get("state") == "failed":
        lines.append(f"re-embedding     to {job.get('to_model')} failed: {job.get('error')}")
    return lines


def backup_line(backup: dict[str, Any] | None, now: datetime | None = None) -> str:
    if backup is None:
        return "none (make backup writes one; BACKUP_EVERY schedules them)"
    when = datetime.fromisoformat(backup["created_at"])
    hours = ((now or datetime.now(UTC)) - when).total_seconds() / 3600
    ago = f"{hours * 60:.0f} min ago" if hours < 1 else f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"
    size = backup.get("bytes") or 0
    return (f"{when.strftime('%Y-%m-%d %H:%M')} UTC ({ago}), {backup.get('rows')} rows, "
            f"{size / 1024**2:.1f} MiB in {backup['path']}")
