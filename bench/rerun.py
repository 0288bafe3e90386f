"""Does re-running an unchanged folder cost little? The first ingest of a folder against a re-run of it.

    python -m bench.rerun [--files 2000] [--upload] [--quick]

Writes N tiny distinct JPEGs (48 px) into a library root, starts every service as its own process (a
private Redis, the embedded store, the embedder with the tiny random CLIP, Celery workers, the gateway;
`tools.stack`), then times the real `python -m tools.ingest <folder>` from its start to its exit: once on
the fresh folder (every file read, embedded, stored with its thumbnail) and once more unchanged (the
command asks the gateway which files it already holds, and sends nothing). Tiny files and a tiny model
make the first run as cheap as it can be, so the ratio is the least favourable one. `--upload` makes the
command upload the files instead of sending paths.

The headline is re-run seconds / first-run seconds. Prints a table and writes `bench/results/rerun.json`.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Stopwatch, format_table, free_port, machine_info, offline_run, write_results

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-rerun-key"




def write_folder(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        image = Image.new("RGB", (48, 48), ((i * 37) % 256, (i * 101) % 256, (i // 256 * 53) % 256))
        image.putpixel((i % 48, (i // 48) % 48), (255, 255, 255))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        (folder / f"IMG_{i:05d}.jpg").write_bytes(out.getvalue())


def run_ingest(folder: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    with Stopwatch() as watch:
        done = subprocess.run([sys.executable, "-m", "tools.ingest", str(folder), "--poll-interval", "0.2", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"ingest failed:\n{done.stdout}\n{done.stderr}")
    return watch.seconds, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rerun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=None, help="files in the folder (default 2000; 300 with --quick)")
    parser.add_argument("--upload", action="store_true", help="upload the files instead of sending paths")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    offline_run()
    count = args.files or (300 if args.quick else 2000)

    from tools.random_model import write_random_clip
    from tools.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as scratch:
        work = Path(scratch)
        model_dir = write_random_clip(work / "clip-tiny", size="tiny")
        root = work / "Pictures"
        write_folder(root / "library", count)
        ports = {name: free_port() for name in ("redis", "store", "embedder", "api", "ui")}
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0", "STORE_URL": f"http://127.0.0.1:{ports['store']}",
            "STORE_DATA_DIR": str(work / "store"), "STORE_TABLE": "photos_rerun",
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}", "EMBEDDER_MODEL": str(model_dir),
            "API_URL": f"http://127.0.0.1:{ports['api']}", "API_KEYS": API_KEY, "UI_PORT": str(ports["ui"]),
            "LIBRARY_ROOTS": str(root), "WORKER_CONCURRENCY": "2", "WORKER_METRICS_PORT": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }
        stack = Stack(env=env, log_dir=work / "logs", run_dir=work / "run",
                      only=["store", "embedder", "worker", "api"])
        print(f"{count} files of 48 px; starting the services (logs in {work / 'logs'})")
        stack.start(timeout=300)
        try:
            extra = ("--upload",) if args.upload else ()
            first, first_line = run_ingest(root / "library", stack.env, *extra)
            print(f"first run: {first:.1f} s ({first_line})")
            again, again_line = run_ingest(root / "library", stack.env, *extra)
            print(f"re-run: {again:.2f} s ({again_line})")
        finally:
            stack.stop()
    ratio = again / first
    print(format_table([["first run", round(first, 2), count], ["re-run, unchanged", round(again, 2), 0]],
                       ["run", "seconds", "photos sent"]))
    print(f"re-run / first run: {ratio:.3f} (target: under 0.10)")
    path = write_results("rerun" + ("-upload" if args.upload else ""), {
        "machine": machine_info(), "files": count, "mode": "upload" if args.upload else "paths",
        "first_run_s": round(first, 3), "rerun_s": round(again, 3), "ratio": round(ratio, 4),
        "first_run_summary": first_line, "rerun_summary": again_line})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
