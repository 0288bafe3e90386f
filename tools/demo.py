"""`make demo`: start the whole stack and fill it with photos, with or without the internet.

With the internet: the real CLIP model (`openai/clip-vit-base-patch32`) and the first 1,000 photos of
Unsplash Lite, as in the original article. Without it (no model hub or no Unsplash): the same stack on
a CLIP with random weights and a generated local sample set, in a table of its own; it says so
here, in the UI's banner and in every CLI summary, because such results mean nothing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from services.common.config import DEFAULT_MODEL
from tools.download import DownloadError, download, download_models
from tools.stack import ROOT, Stack

MODEL_PROBE_URL = "https://huggingface.co/api/models/openai/clip-vit-base-patch32"
UNSPLASH_LITE_URL = "https://unsplash-datasets.s3.amazonaws.com/lite/latest/unsplash-research-dataset-lite-latest.zip"
DATA = ROOT / "data"


def reachable(url: str, timeout: float = 5.0) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (fixed https URLs)
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500 and exc.code != 404
    except (urllib.error.URLError, OSError, ValueError):
        return False


def plan(offline: bool, limit: int, sample_count: int) -> tuple[dict[str, str], Path, bool]:
    """The environment for the stack, the ingest source, and whether results are meaningless."""
    if not offline and reachable(MODEL_PROBE_URL) and reachable(UNSPLASH_LITE_URL):
        # Both downloads show their progress here, in the terminal that ran the command.
        source = download(UNSPLASH_LITE_URL, DATA / "unsplash-research-dataset-lite-latest.zip")
        download_models(os.environ.get("EMBEDDER_MODEL") or DEFAULT_MODEL,
                        os.environ.get("EMBEDDER_TEXT_MODEL") or "auto")
        return {}, source, False
    print(
        "\n*** No internet (the model hub or Unsplash cannot be reached). ***\n"
        "The demo runs the same stack on a CLIP model with RANDOM WEIGHTS and a generated local sample set.\n"
        "Search results will be MEANINGLESS; the UI shows a banner saying so. With the internet, `make demo`\n"
        "uses the real model and Unsplash photos.\n"
    )
    from tools.random_model import write_random_clip

    model_dir = DATA / "models" / "clip-random-b32"
    if not (model_dir / "RANDOM_WEIGHTS").exists():
        print(f"writing a random-weight CLIP (ViT-B/32 shapes) to {model_dir}")
        write_random_clip(model_dir, size="b32")
    samples_dir = DATA / "sample"
    samples_port = os.environ.get("SAMPLES_PORT", "8090")
    if not (samples_dir / "photos.tsv").exists():
        from tools.sample_data import write_sample_set

        write_sample_set(samples_dir, sample_count, f"http://127.0.0.1:{samples_port}")
    env = {
        "EMBEDDER_MODEL": str(model_dir),
        # A table of its own, so random vectors never mix with a real model's.
        "STORE_TABLE": os.environ.get("STORE_TABLE", "photos_random_demo"),
        "SAMPLES_DIR": str(samples_dir),
        "SAMPLES_PORT": samples_port,
        "FETCH_ALLOW_HOSTS": ",".join(filter(None, [os.environ.get("FETCH_ALLOW_HOSTS", ""), "127.0.0.1"])),
    }
    return env, samples_dir / "photos.tsv", True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="skip the internet check: random model, sample set")
    parser.add_argument("--limit", type=int, default=1000, help="photos to ingest (default 1000, as in the original article)")
    parser.add_argument("--samples", type=int, default=200, help="size of the offline sample set")
    args = parser.parse_args(argv)

    try:
        env, source, meaningless = plan(args.offline, args.limit, args.samples)
    except DownloadError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 1
    stack = Stack(env=env)
    if any(state == "running" for state in stack.status().values()):
        print("Services are already running; stopping them first (make down).")
        stack.stop()
    try:
        # The model is in the cache by now; loading it still takes a while on a slow disk.
        stack.start(timeout=900)
    except (RuntimeError, SystemExit) as exc:
        print(f"make demo failed while starting services: {exc}", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "tools.ingest", str(source), "--limit", str(args.limit)]
    print("\n$ " + " ".join(command[1:]))
    result = subprocess.run(command, cwd=ROOT, env=stack.env)
    ui = f"http://127.0.0.1:{stack.settings['UI_PORT']}"
    print(f"\nThe demo is running. Open {ui} (API docs: {stack.settings['API_URL']}/docs). Stop it with `make down`.")
    if meaningless:
        print("Note: this demo uses a random-weight model; its search results are meaningless.")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
