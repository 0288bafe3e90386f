"""Helpers every benchmark shares: timing a piece of work, printing a table, writing the JSON record.

A benchmark measures its baseline in the same run and reports a ratio (see bench/README in the
design). Results go to `bench/results/<name>.json` with enough about the machine (CPU, cores, load,
accelerator, versions, git commit) to tell later whether two records are comparable.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    """`items` processed in `seconds` (the sum of the timed runs); `per_run` holds each run's time."""

    label: str
    items: int
    seconds: float
    per_run: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # CPU time of this process over the same runs: steadier than wall time on a busy machine.
    cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_rate(self) -> float | None:
        return self.items / self.cpu_seconds if self.cpu_seconds else None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.per_run) * 1000 if self.per_run else float("nan")

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["per_second"] = round(self.rate, 3)
        record["per_cpu_second"] = round(self.cpu_rate, 3) if self.cpu_rate else None
        record["cpu_seconds"] = round(self.cpu_seconds, 4) if self.cpu_seconds is not None else None
        record["median_run_ms"] = round(self.median_ms, 3)
        record["seconds"] = round(self.seconds, 4)
        record["per_run"] = [round(value, 5) for value in self.per_run]
        return record


def free_port() -> int:
    """A port nothing listens on now, on loopback (benchmarks send traffic to loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_run() -> None:
    """What every benchmark does first: quiet logging, and no model hub (a missing file fails at once)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def measure(label: str, run: Callable[[], int], *, min_runs: int = 1, min_seconds: float = 0.0,
            max_runs: int = 10_000, warmup: int = 0, **extra: Any) -> Measurement:
    """Call `run` (which returns how many items it processed) until both minimums are met."""
    for _ in range(warmup):
        run()
    items, times = 0, []
    started = time.perf_counter()
    cpu_started = time.process_time()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < min_seconds):
        begin = time.perf_counter()
        items += run()
        times.append(time.perf_counter() - begin)
    return Measurement(label, items, sum(times), times, dict(extra), cpu_seconds=time.process_time() - cpu_started)


class Stopwatch:
    """`with Stopwatch() as watch:` ... then `watch.seconds` and `watch.cpu_seconds`."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table, numbers right-aligned, ready to print."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
        return str(value)

    cells = [[cell(value) for value in row] for row in rows]
    widths = [max(len(str(name)), *(len(row[i]) for row in cells)) if cells else len(str(name))
              for i, name in enumerate(header)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) if rows else False for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if right else value.ljust(width)
                         for value, width, right in zip(values, widths, numeric)).rstrip()

    return "\n".join([line([str(name) for name in header]), line(["-" * width for width in widths]),
                      *(line(row) for row in cells)])


def _cpu_model() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine_info(**extra: Any) -> dict[str, Any]:
    """What a reader needs to judge whether two records are comparable."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": cores,
        "load_average": [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }
    info.update(extra)
    return info


def write_results(name: str, payload: dict[str, Any], folder: Path | None = None,
                  output: str | Path | None = None) -> Path:
    """Write `payload` (plus a timestamp) to `<folder>/<name>.json`; return the path. `output` (a bench's
    `--output`), when given, is the file instead, and its stem the record's name."""
    if output:
        name, folder = Path(output).stem, Path(output).parent
    folder = folder or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    record = {"benchmark": name, "written_at": datetime.now(UTC).isoformat(timespec="seconds"), **payload}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def wait_ready(client, server, timeout_s: float, what: str = "the embedder") -> float:
    """Poll `client`'s /readyz until it answers 200; the seconds it took. Fails at once if the
    `server` process ended, and after `timeout_s` otherwise."""
    import httpx

    started = time.monotonic()
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if time.monotonic() - started > timeout_s or server.poll() is not None:
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.1)
