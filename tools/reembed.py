"""Re-embed the library under a new model without downtime: `make reembed MODEL=... [TEXT_MODEL=...]`.

Starts the job through the gateway (POST /v1/reembed: the embedder loads the model first, and a model it
cannot load is refused with its sentence before anything changes), or resumes it when one to the same
model is already running or was stopped: photos already in the new table are never embedded again. Then
waits with a progress bar (rate, ETA) until the workers switch the library to the new table, and exits
non-zero with the job's sentence if it fails. Searches are answered from the old table all along.
`ACTION=rollback` switches back to the table that answered before; `ACTION=drop-old` drops it.
HTTP to the gateway only (ApiClient).
"""
from __future__ import annotations

import argparse
import sys
import time

from services.common.config import CommonSettings
from tools.ingest import RATE_LIMIT_WAIT_S, _duration, failure_table, resolve_api_key, say_rate_limited


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.reembed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="the model to re-embed with (the embedder's EMBEDDER_MODEL form)")
    parser.add_argument("--text-model", default=None, help="its text tower (default: the model's own)")
    parser.add_argument("--action", choices=("start", "rollback", "drop-old", "status"), default="start")
    parser.add_argument("--api-url", default=None, help="the gateway (default: API_URL)")
    parser.add_argument("--api-key", default=None, help="write key (default: API_KEY, else the first of API_KEYS)")
    parser.add_argument("--batch-size", type=int, default=None, help="photos per worker task (1..256; default 32)")
    parser.add_argument("--no-wait", action="store_true", help="start the job and return without waiting")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between progress checks")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    if args.action == "start" and not (args.model or "").strip():
        parser.error("name the model: make reembed MODEL=<model> [TEXT_MODEL=<text tower>]")
    return args


def describe(active: dict) -> str:
    model = active.get("model") or "the embedder's own model"
    text = f" with text tower {active['text_model']}" if active.get("text_model") else ""
    return f"{model}{text} (table {active['table']})"


def progress_line(job: dict) -> str:
    eta = job.get("eta_s")
    return (f"done={job['done']} from_thumbnail={job.get('fell_back', 0)} failed={job['failed']} "
            f"{float(job.get('rate') or 0):.1f} photos/s ETA {'?' if eta is None else _duration(eta)}")


def wait(client, *, poll_interval: float, timeout: float | None) -> dict:
    """Poll GET /v1/reembed until the job is done (switched) or failed; a gateway or Redis briefly away is
    waited for."""
    from tqdm import tqdm

    from services.common.api_client import ApiError

    deadline = time.monotonic() + timeout if timeout else None
    with tqdm(total=0, unit="photo", desc="re-embed", file=sys.stderr) as bar:
        while True:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"the re-embedding was not done after {timeout:g} s")
            try:
                status = client.reembed_status()
            except ApiError as exc:
                if exc.status not in (0, 429, 502, 503, 504):
                    raise
                time.sleep(max(poll_interval, exc.retry_after or 0))
                continue
            job = status.get("job") or {}
            processed = int(job.get("done", 0)) + int(job.get("failed", 0)) + int(job.get("fell_back", 0))
            bar.total = max(int(job.get("total") or 0), processed)
            bar.n = processed
            bar.set_postfix_str(progress_line(job) if job else "", refresh=False)
            bar.refresh()
            if job.get("state") in ("done", "failed"):
                return status
            time.sleep(poll_interval)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from services.common.api_client import ApiClient, ApiError

    settings = CommonSettings()
    api_url = (args.api_url or settings.api_url).rstrip("/")
    client = ApiClient(api_url, api_key=resolve_api_key(args.api_key, settings), rate_limit_wait=RATE_LIMIT_WAIT_S,
                       on_rate_limit=say_rate_limited)
    try:
        if args.action == "status":
            status = client.reembed_status()
            print(f"Queries are answered by {describe(status['active'])}.")
            return 0
        if args.action in ("rollback", "drop-old"):
            status = client.reembed_action(args.action)
            if args.action == "rollback":
                print(f"Rolled back: queries are answered by {describe(status['active'])}.")
            else:
                print(f"Dropped {status.get('dropped')}; queries are answered by {describe(status['active'])}.")
            return 0
        started = client.reembed(args.model.strip(), (args.text_model or "").strip() or None, args.batch_size)
        job = started["job"]
        verb = "Resuming" if started.get("resumed") else "Started"
        print(f"{verb} re-embedding {job['from_table']} into {job['to_table']} with {job['to_model']} "
              f"({job['total'] - job['done']} photos to go); searches use {describe(started['active'])} until "
              "the switch.", file=sys.stderr)
        if args.no_wait:
            return 0
        status = wait(client, poll_interval=args.poll_interval, timeout=args.timeout)
    except ApiError as exc:
        print(f"make reembed: {exc.message}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"make reembed: {exc}; the job goes on (run the same command again to follow it).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopped waiting; the re-embedding goes on. Run the same command again to follow it.",
              file=sys.stderr)
        return 130
    finally:
        client.close()
    job = status["job"]
    if job["failed"] or job.get("fell_back"):
        print("Photos that could not be read from their source:", file=sys.stderr)
        print("\n".join(failure_table({**job, "failures_by_reason": {
            **job["failures_by_reason"], **({"from_thumbnail": job["fell_back"]} if job.get("fell_back") else {})}})),
            file=sys.stderr)
    if job["state"] == "failed":
        print(f"make reembed: the re-embedding failed: {job.get('error')}", file=sys.stderr)
        return 1
    print(f"Switched: queries are answered by {describe(status['active'])}. The old table {job['from_table']} is "
          "kept: make reembed ACTION=rollback switches back, ACTION=drop-old drops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
