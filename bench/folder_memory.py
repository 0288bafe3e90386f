"""Does a large folder keep memory flat? Peak RSS of the ingest command and the gateway at 10k and 100k files.

    python -m bench.folder_memory [--files 10000,100000] [--out NAME]

Writes N tiny distinct JPEGs (one small base JPEG with a comment segment that carries the file's
number, so every file's bytes, hence its photo id, differ) into a folder under a library root, starts
a private Redis, the embedded store, the embedder (tiny random CLIP; the gateway's /readyz and
/v1/stats ask it) and the gateway as real processes (`tools.stack`), and runs the real
`python -m tools.ingest <folder> --no-wait`. No worker runs: the batches stay queued in Redis, so only
scanning, the gateway's file questions and submitting are measured.

Peak RSS is the kernel's VmHWM polled from /proc every 20 ms (psutil is not a dependency): the
command's since it started, the gateway's since a reset before each run (`/proc/<pid>/clear_refs`),
with the highest VmRSS polled as a fallback where the reset is not allowed. The baseline is the same processes idle: the command on a one-file folder,
the gateway before any run. The headline is peak at the largest size / peak at the smallest.

Prints a table and writes `bench/results/folder-memory.json`.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import format_table, free_port, machine_info, offline_run, write_results

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-folder-memory-key"


def base_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 140, 200)).save(out, format="JPEG", quality=80)
    return out.getvalue()


def write_folder(folder: Path, count: int) -> None:
    """`count` distinct JPEGs of a few hundred bytes: a COM segment (FF FE) after SOI names each one."""
    base = base_jpeg()
    folder.mkdir(parents=True)
    for i in range(count):
        payload = f"bench file {i}".encode()
        comment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
        sub = folder / f"d{i // 1000:03d}"  # a thousand files a folder, as a camera would
        if i % 1000 == 0:
            sub.mkdir()
        (sub / f"IMG_{i:06d}.jpg").write_bytes(base[:2] + comment + base[2:])


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Peak:
    """A process's peak RSS while the block runs: the kernel's VmHWM (the high-water mark since exec, or
    since `reset`), polled every 20 ms so a process that exits is still counted; where the reset is
    not allowed, the highest VmRSS polled instead (HWM would include earlier runs)."""

    def __init__(self, pid: int, *, reset: bool = False):
        self.pid = pid
        self.peak_kib = 0
        self.use_hwm = True
        if reset:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            except OSError:
                self.use_hwm = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while True:
            fields = ("VmHWM", "VmRSS") if self.use_hwm else ("VmRSS",)
            self.peak_kib = max(self.peak_kib, *(_status_kib(self.pid, name) or 0 for name in fields))
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_ingest(folder: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Run the command once; returns (seconds, its peak RSS in KiB, its last line of output)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([sys.executable, "-m", "tools.ingest", str(folder), "--no-wait"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        # Not wait4's ru_maxrss: Linux keeps it across exec, so it would count this (larger) process.
        with Peak(process.pid) as peak:
            process.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"ingest of {folder} failed ({process.returncode}):\n{text}")
    submitted = [line for line in text.splitlines() if line.startswith("Submitted")]
    return seconds, peak.peak_kib, submitted[-1] if submitted else text.strip().splitlines()[-1]


def measure(sizes: list[int], work: Path) -> dict:
    from tools.random_model import write_random_clip
    from tools.stack import Stack

    model_dir = write_random_clip(work / "clip-tiny", size="tiny")
    root = work / "Pictures"
    ports = {name: free_port() for name in ("redis", "store", "embedder", "api", "ui")}
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0", "STORE_URL": f"http://127.0.0.1:{ports['store']}",
        "STORE_DATA_DIR": str(work / "store"), "STORE_TABLE": "photos_folder_memory",
        "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}", "EMBEDDER_MODEL": str(model_dir),
        "API_URL": f"http://127.0.0.1:{ports['api']}", "API_KEYS": API_KEY, "UI_PORT": str(ports["ui"]),
        "LIBRARY_ROOTS": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }
    write_folder(root / "baseline", 1)
    stack = Stack(env=env, log_dir=work / "logs", run_dir=work / "run", only=["store", "embedder", "api"])
    stack.start(timeout=300)
    rows = []
    try:
        api_pid = stack.processes["api"].pid
        gateway_idle = _status_kib(api_pid, "VmRSS") or 0
        _, command_idle, _ = run_ingest(root / "baseline", stack.env)
        for count in sizes:
            folder = root / f"files-{count}"
            started = time.perf_counter()
            write_folder(folder, count)
            written = time.perf_counter() - started
            with Peak(api_pid, reset=True) as gateway:
                seconds, command_peak, line = run_ingest(folder, stack.env)
            print(f"{count} files (written in {written:.1f} s): {seconds:.1f} s; {line}")
            rows.append({"files": count, "seconds": round(seconds, 2), "command_peak_mib": round(command_peak / 1024, 1),
                         "gateway_peak_mib": round(gateway.peak_kib / 1024, 1), "summary": line})
    finally:
        stack.stop()
    first, last = rows[0], rows[-1]
    return {
        "baseline": {"command_mib": round(command_idle / 1024, 1), "gateway_mib": round(gateway_idle / 1024, 1)},
        "runs": rows,
        "ratio_command": round(last["command_peak_mib"] / first["command_peak_mib"], 3),
        "ratio_gateway": round(last["gateway_peak_mib"] / first["gateway_peak_mib"], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.folder_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="10000,100000", help="comma-separated folder sizes (default 10000,100000)")
    parser.add_argument("--out", default="folder-memory", help="results file name under bench/results/")
    parser.add_argument("--results-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    offline_run()
    sizes = [int(part) for part in args.files.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-folder-memory-") as scratch:
        figures = measure(sizes, Path(scratch))
    base = figures["baseline"]
    table = [["idle (baseline)", "", base["command_mib"], base["gateway_mib"]]]
    table += [[f"{run['files']:,} files", run["seconds"], run["command_peak_mib"], run["gateway_peak_mib"]]
              for run in figures["runs"]]
    print(format_table(table, ["run", "seconds", "command peak MiB", "gateway peak MiB"]))
    print(f"peak at {sizes[-1]:,} / peak at {sizes[0]:,}: command {figures['ratio_command']}, "
          f"gateway {figures['ratio_gateway']} (flat: close to 1)")
    path = write_results(args.out, {"machine": machine_info(), **figures}, folder=args.results_dir)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
