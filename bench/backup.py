"""`make bench-backup`: `make backup` and `make restore` of a library of N photos (default 100,000 random
unit vectors of 512 dimensions with the usual metadata columns, and a file record each), written straight
into an embedded store this bench starts. For each size (10,000 and N) it times the backup command and
the restore command, each its own process, and polls each one's peak RSS; the headline is the peak at N
over the peak at 10,000 (flat memory: about 1), and the goal is each command within 2 minutes at N.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import format_table, free_port, machine_info, write_results
from bench.folder_memory import Peak

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
BATCH = 10_000


def start_store(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1", "--port",
                                str(port), "--data-dir", str(data_dir)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the embedded store did not start within 120 s")


def fill(url: str, table: str, rows: int) -> float:
    import numpy as np

    from services.common.schemas import PhotoRecord
    from services.photostore import PhotoStore

    started = time.perf_counter()
    store = PhotoStore(url, table, query_timeout=600)
    store.ensure_table(DIM, "bench/random-unit-vectors")
    store.ensure_library_tables()
    rng = np.random.default_rng(7)
    for first in range(0, rows, BATCH):
        ids = range(first, min(rows, first + BATCH))
        vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        photos = [PhotoRecord(photo_id=f"p{i:07d}", photo_image_url=f"https://images.example/{i}.jpg",
                              photo_description=f"photo number {i}", photographer_username=f"user{i % 97}",
                              photo_width=4000, photo_height=3000, photo_aspect_ratio=1.333,
                              photo_location_country=("Spain", "Japan", "Peru")[i % 3]) for i in ids]
        store.insert_photos(photos, vectors)
        store.record_files([(f"/pics/{i}.jpg", f"p{i:07d}", 2_000_000 + i, 1.7e9 + i) for i in ids])
    store.close()
    return time.perf_counter() - started


def run(args: list[str], env_url: str) -> tuple[float, int, str]:
    """One command, its own process: (seconds, peak RSS KiB, last line)."""
    import os

    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, "STORE_URL": env_url},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with Peak(process.pid) as peak:
        out, _ = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out}")
    return seconds, peak.peak_kib, out.strip().splitlines()[-1]


def measure(sizes: list[int], work: Path) -> list[dict]:
    process, url = start_store(work / "store")
    results = []
    try:
        _, idle_kib, _ = run(["tools.backup", "--help"], url)  # the interpreter and imports alone
        for rows in sizes:
            table = f"bench_backup_{rows}"
            fill_s = fill(url, table, rows)
            backup_s, backup_kib, line = run(["tools.backup", "--table", table, "--dir", str(work / "backups")], url)
            folder = Path(line.rsplit(" to ", 1)[1])
            size = sum(path.stat().st_size for path in folder.iterdir())
            restore_s, restore_kib, _ = run(["tools.restore", str(folder), "--table", f"{table}_restored"], url)
            results.append({"rows": rows, "fill_s": round(fill_s, 1), "backup_s": round(backup_s, 1),
                            "restore_s": round(restore_s, 1), "backup_mib": round(size / 1024**2, 1),
                            "backup_peak_mib": round(backup_kib / 1024, 1),
                            "restore_peak_mib": round(restore_kib / 1024, 1),
                            "idle_command_peak_mib": round(idle_kib / 1024, 1)})
            print(f"{rows:,} rows: backup {backup_s:.1f} s, restore {restore_s:.1f} s", flush=True)
    finally:
        process.terminate()
        process.wait(30)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="the larger library (default 100,000)")
    parser.add_argument("--output", help="the JSON file (default bench/results/backup.json)")
    args = parser.parse_args(argv)
    sizes = sorted({min(10_000, args.rows), args.rows})
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        results = measure(sizes, Path(tmp))
    small, large = results[0], results[-1]
    figures = {"backup_peak_ratio": round(large["backup_peak_mib"] / small["backup_peak_mib"], 3),
               "restore_peak_ratio": round(large["restore_peak_mib"] / small["restore_peak_mib"], 3),
               "within_2_minutes": large["backup_s"] <= 120 and large["restore_s"] <= 120}
    print(format_table([[f"{r['rows']:,}", r["backup_s"], r["restore_s"], r["backup_mib"], r["backup_peak_mib"],
                         r["restore_peak_mib"]] for r in results],
                       ["rows", "backup s", "restore s", "backup MiB", "backup peak MiB", "restore peak MiB"]))
    print(f"peak at {large['rows']:,} / peak at {small['rows']:,}: backup {figures['backup_peak_ratio']}, "
          f"restore {figures['restore_peak_ratio']} (the command's interpreter alone: "
          f"{small['idle_command_peak_mib']} MiB); each within 2 minutes: {figures['within_2_minutes']}")
    path = write_results("backup", {"machine": machine_info(), "runs": results, **figures}, output=args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
