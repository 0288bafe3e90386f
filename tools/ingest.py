"""`python -m tools.ingest SOURCE`: submit photos to the gateway and follow the job.

Reads a source (see sources.py), posts the photos to the API's POST /v1/ingest in chunks (the first
chunk creates the job, the next ones add to it), then polls GET /v1/jobs/{id} with a progress bar
and prints a summary. It talks to the gateway over HTTP only, never to Redis.

Exit status: 0 when the job finished (even with per-photo failures, which the summary lists),
1 when the gateway refused the request or the source is unusable, 2 when the gateway cannot be
reached, 130 when interrupted.

A folder needs no flag (tools/folder_ingest.py): the workers read its files directly when it lies
under LIBRARY_ROOTS, else this command uploads them to the gateway; a re-run sends only new and
changed files, and `--prune` removes the photos whose files are gone. `--base-url` (the folder is
already served over HTTP) and `--serve HOST:PORT` (serve it from this command while the job runs; the
host must be in the workers' FETCH_ALLOW_HOSTS) still work, but nothing needs them any more.

When the job stops moving (no batch finished for `--stall-timeout` seconds) or disappears (a Redis
restarted without persistence lost it), the broker may have lost queued batches: the command submits
the same photos again as a new job and follows that one. This is safe because ingestion is
idempotent (photos already stored are skipped), and it is what recovers a queue that was lost. The
photos are read again from the source for that, not kept: a list of ten million rows costs one chunk.
The gateway's rate limit (429) is waited out as `Retry-After` asks, with a line saying so.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import ipaddress
import logging
import os
import sys
import threading
import time
from itertools import islice
from pathlib import Path

from services.common.config import CommonSettings
from tools.sources import SourceError, open_source

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_CHUNK = 1000
# Per request: a per-minute limit asks for at most 60 s; past ten minutes a person should hear why instead.
RATE_LIMIT_WAIT_S = 600.0
RANDOM_WEIGHTS_LINE = ("Note: the embedder runs a model with RANDOM WEIGHTS; search results will be "
                       "meaningless until a real CLIP model is configured (EMBEDDER_MODEL).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="photos.tsv*, the Unsplash Lite .zip, a list of URLs (.txt, .csv, "
                        ".jsonl), or a folder")
    parser.add_argument("--retry", metavar="JOB_ID", default=None,
                        help="instead of a source: retry the failed photos of this job as a new job")
    parser.add_argument("--limit", type=int, default=None, help="ingest at most this many photos")
    parser.add_argument("--batch-size", type=int, default=32, help="photos per worker task (1..256)")
    parser.add_argument("--chunk-size", type=int, default=MAX_CHUNK, help=f"photos per request (1..{MAX_CHUNK})")
    parser.add_argument("--api-url", default=None, help="the gateway (default: API_URL)")
    parser.add_argument("--api-key", default=None, help="write key (default: API_KEY, else the first of API_KEYS)")
    parser.add_argument("--no-wait", action="store_true", help="submit and print the job id without waiting")
    parser.add_argument("--full-size", action="store_true",
                        help="fetch Unsplash originals instead of the 200-px rendition")
    parser.add_argument("--base-url", default=None, help="for a folder: the URL at which it is served")
    parser.add_argument("--serve", metavar="HOST:PORT", default=None,
                        help="for a folder: serve it over HTTP at HOST:PORT while the job runs (PORT 0: any free)")
    parser.add_argument("--upload", action="store_true",
                        help="for a folder: upload the files even if the workers could read them")
    parser.add_argument("--no-upload", action="store_true",
                        help="for a folder: fail rather than upload when the workers cannot read it")
    parser.add_argument("--verbose", action="store_true", help="for a folder: name each file that is not a photo or video")
    parser.add_argument("--prune", action="store_true",
                        help="for a folder: remove the photos of files that are gone from it")
    parser.add_argument("--window", type=int, default=256,
                        help="for an upload: at most this many uploaded photos waiting for the workers")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between progress checks")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.add_argument("--stall-timeout", type=float, default=300.0,
                        help="resubmit the photos (idempotently) when no batch finished for this many seconds; "
                             "0: never")
    args = parser.parse_args(argv)
    if bool(args.source) == bool(args.retry):
        parser.error("give a source, or --retry JOB_ID (not both)")
    if args.chunk_size < 1 or args.chunk_size > MAX_CHUNK:
        parser.error(f"--chunk-size must be between 1 and {MAX_CHUNK}")
    if not 1 <= args.batch_size <= 256:
        parser.error("--batch-size must be between 1 and 256")
    if args.serve and args.no_wait:
        parser.error("--serve needs to wait: the folder is served only while the command runs")
    if args.serve and args.base_url:
        parser.error("give either --serve or --base-url, not both")
    if args.upload and args.no_upload:
        parser.error("give either --upload or --no-upload, not both")
    if (args.serve or args.base_url) and (args.upload or args.prune):
        parser.error("--upload and --prune are for a folder read by the workers or uploaded, not served")
    return args


def resolve_api_key(explicit: str | None, settings: CommonSettings) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("API_KEY"):
        return os.environ["API_KEY"]
    keys = settings.api_key_list
    return keys[0] if keys else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("serve: " + format, *args)


def serve_folder(folder: Path, address: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start a static HTTP server for `folder` at HOST:PORT; returns it and its base URL."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SourceError(f"--serve takes HOST:PORT (for example 127.0.0.1:0), not {address!r}.")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((host, int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-serve", daemon=True).start()
    advertised = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    try:
        if not ipaddress.ip_address(advertised).is_global:
            print(f"Serving {folder} at http://{advertised}:{server.server_port}/ ; the workers must be allowed to "
                  f"fetch it: FETCH_ALLOW_HOSTS must include {advertised}.", file=sys.stderr)
    except ValueError:
        pass
    return server, f"http://{advertised}:{server.server_port}"


def _chunks(records, size: int):
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


def submit(client, records, *, chunk_size: int, batch_size: int, job_id: str | None = None) -> tuple[str | None, int]:
    """Post the records in chunks (into `job_id`, else a new job); returns (job_id, photos submitted)."""
    submitted = 0
    for chunk in _chunks(records, chunk_size):
        answer = client.ingest([record.model_dump() for record in chunk], job_id=job_id, batch_size=batch_size)
        job_id = answer["job_id"]
        submitted += len(chunk)
        log.debug("submitted %d photos to job %s", submitted, job_id)
    return job_id, submitted


def wait_for(client, job_id: str, total: int, *, poll_interval: float, timeout: float | None,
             resubmit=None, stall_timeout: float | None = None) -> dict:
    """Poll the job until it is done. `resubmit()` (submits the photos again, returns the new job's
    id) is called when the job vanished or made no progress for `stall_timeout` seconds; a gateway or
    Redis that is briefly unavailable (503, unreachable) is waited for."""
    from tqdm import tqdm

    from services.common.api_client import ApiError

    deadline = time.monotonic() + timeout if timeout else None
    progress, moved_at = None, time.monotonic()

    def start_again(why: str) -> str:
        nonlocal progress, moved_at
        print(f"\nJob {job_id} {why}; the broker may have lost its queued batches. Submitting the same photos "
              f"again as a new job (photos already stored are skipped).", file=sys.stderr)
        progress, moved_at = None, time.monotonic()
        try:
            return resubmit()
        except ApiError as exc:
            if exc.status not in (0, 502, 503, 504):
                raise
            print(f"Could not submit them yet ({exc.message}); trying again.", file=sys.stderr)
            return job_id

    with tqdm(total=total, unit="photo", desc="ingest", file=sys.stderr) as bar:
        while True:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} was not done after {timeout:g} s")
            try:
                job = client.job(job_id)
            except ApiError as exc:
                if exc.status == 404 and resubmit is not None:
                    job_id = start_again("is gone (Redis lost it)")
                elif exc.status == 429:  # the client's own wait ran out: the job goes on, so keep asking
                    wait = max(exc.retry_after or 0.0, poll_interval)
                    say_rate_limited(wait, exc)
                    time.sleep(wait)
                    continue
                elif exc.status not in (0, 502, 503, 504):
                    raise
                time.sleep(poll_interval)
                continue
            processed = job["succeeded"] + job["skipped"] + job["failed"]
            bar.total = max(job.get("total") or total, processed)
            bar.n = processed
            bar.set_postfix_str(progress_line(job), refresh=False)
            bar.refresh()
            if job["state"] == "done":
                return job
            if (job.get("batches_done"), processed) != progress:
                progress, moved_at = (job.get("batches_done"), processed), time.monotonic()
            elif resubmit is not None and stall_timeout and time.monotonic() - moved_at > stall_timeout:
                job_id = start_again(f"made no progress for {stall_timeout:g} s")
            time.sleep(poll_interval)


def say_rate_limited(seconds: float, error) -> None:
    """One line per wait for the gateway's rate limit, written above the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"Waiting {seconds:g} s for the gateway's rate limit ({error.message.rstrip('.')}).", file=sys.stderr)


def progress_line(job: dict) -> str:
    """What the progress bar says beside the count: outcomes, the job's rate and its ETA."""
    eta = job.get("eta_s")
    eta_text = "?" if eta is None else _duration(eta)
    return (f"ok={job['succeeded']} skipped={job['skipped']} failed={job['failed']} "
            f"{float(job.get('rate') or 0):.1f} photos/s ETA {eta_text}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def failure_table(job: dict) -> list[str]:
    """Failures by reason as an aligned table, most first, with an example reason for each code."""
    by_reason: dict[str, int] = job.get("failures_by_reason") or {}
    if not by_reason:
        return []
    examples: dict[str, str] = {}
    for failure in job.get("failures", []):
        examples.setdefault(str(failure.get("code")), str(failure.get("reason") or ""))
    width = max(len("reason"), *(len(code) for code in by_reason))
    count_width = max(len("photos"), *(len(str(n)) for n in by_reason.values()))
    lines = [f"  {'reason':<{width}}  {'photos':>{count_width}}  example",
             f"  {'-' * width}  {'-' * count_width}  -------"]
    for code, count in by_reason.items():
        example = examples.get(code, "")
        lines.append(f"  {code:<{width}}  {count:>{count_width}}  {example[:100]}".rstrip())
    return lines


def summary(job: dict, *, api_url: str = "") -> str:
    lines = [f"Job {job['job_id']}: {job['succeeded']} ingested, {job['skipped']} skipped (already stored), "
             f"{job['failed']} failed, of {job['total']}."]
    if job["failed"]:
        lines.append("Failures by reason:")
        lines.extend(failure_table(job))
        lines.append(f"List them: GET {api_url}/v1/jobs/{job['job_id']}/failures ; retry them: "
                     f"python -m tools.ingest --retry {job['job_id']}")
    return "\n".join(lines)


def ingest_folder(client, folder: Path, args: argparse.Namespace, random_weights: bool) -> int:
    """The folder path (tools/folder_ingest.py): paths or uploads, new files only, optional prune."""
    from tools import folder_ingest

    # The stored files come a page at a time, matched against the walk as both go (flat for any folder).
    answer, known = folder_ingest.stored_files(client, str(folder))
    upload = args.upload or not answer["readable"]
    if not answer["readable"]:
        if args.no_upload:
            raise SourceError(answer["reason"])
        folder_ingest.say(f"{answer['reason']} Uploading the files to the gateway instead.")
    if args.prune:  # first, as before any file is sent: a listing of the folder, no file read
        gone, deleted = folder_ingest.prune(client, folder, known)
        print(f"Pruned {gone} files that are gone from {folder}; {deleted} photos with no file left were removed.")
        _, known = folder_ingest.stored_files(client, str(folder))  # the prune read the listing to its end
    # A chunk at a time: scanned, checked against the store, sent, forgotten (flat memory for any folder).
    found = folder_ingest.FolderScan(other_paths=[] if args.verbose else None)
    job_id: str | None = None
    for records in folder_ingest.walk(folder, known, found, upload=upload, limit=args.limit,
                                      chunk_size=args.chunk_size, keep_present=False):
        folder_ingest.stored_copies(client, records, found)
        if upload:
            job_id = folder_ingest.upload_all(client, records, batch_size=args.batch_size, window=args.window,
                                              poll_interval=args.poll_interval, job_id=job_id, sent=found.made
                                              - len(records))
        else:
            job_id, _ = submit(client, records, chunk_size=args.chunk_size, batch_size=args.batch_size,
                               job_id=job_id)
    folder_ingest.walk_report(found, folder)
    if not found.made:
        if not found.seen:
            print(f"No photos found in {folder}; nothing was submitted.", file=sys.stderr)
            return EXIT_REFUSED
        print(f"Nothing new in {folder}.\n{folder_ingest.accounting(found, None)}")
        return EXIT_OK
    submitted = found.made
    how = "uploaded" if upload else "read by the workers from their paths"
    print(f"Submitted {submitted} photos ({how}) as job {job_id} to {client.base_url}.")
    copies = folder_ingest.copies_summary(found.copies, folder, total=found.copies_total)
    if args.no_wait:
        print(f"Follow it with GET {client.base_url}/v1/jobs/{job_id}.")
        if copies:
            print(copies)
        return EXIT_OK
    job = wait_for(client, job_id, submitted, poll_interval=args.poll_interval, timeout=args.timeout)
    print(summary(job))
    print(folder_ingest.accounting(found, job))
    if copies:
        print(copies)
    if random_weights:
        print(RANDOM_WEIGHTS_LINE)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from services.common.api_client import ApiClient, ApiError

    settings = CommonSettings()
    api_url = (args.api_url or settings.api_url).rstrip("/")
    client = ApiClient(api_url, api_key=resolve_api_key(args.api_key, settings), rate_limit_wait=RATE_LIMIT_WAIT_S,
                       on_rate_limit=say_rate_limited)
    server = None
    bad_rows = 0

    def on_bad_row(where: str, reason: str) -> None:
        nonlocal bad_rows
        bad_rows += 1
        if bad_rows <= 10:
            print(f"skipped {where}: {reason}", file=sys.stderr)

    try:
        stats = client.stats()
        random_weights = bool(stats.get("random_weights"))
        if random_weights:
            print(RANDOM_WEIGHTS_LINE)
        if args.retry:
            answer = client.retry_job(args.retry, batch_size=args.batch_size)
            job_id, submitted = answer["job_id"], answer["photos"]
            print(f"Retrying {submitted} failed photos of job {args.retry} as job {job_id}.")
            return _follow(client, args, api_url, job_id, submitted, random_weights)
        folder = Path(args.source).expanduser()
        if folder.is_dir() and not (args.serve or args.base_url):
            return ingest_folder(client, folder.absolute(), args, random_weights)
        base_url = args.base_url
        if args.serve:
            server, base_url = serve_folder(Path(args.source).expanduser(), args.serve)
        def read(report=on_bad_row):  # twice, maybe: to submit, and to submit again (resubmit)
            return open_source(args.source, limit=args.limit, small_images=not args.full_size, base_url=base_url,
                               on_bad_row=report)

        job_id, submitted = submit(client, read(), chunk_size=args.chunk_size, batch_size=args.batch_size)
        if bad_rows > 10:
            print(f"skipped {bad_rows} bad rows in all.", file=sys.stderr)
        if not job_id:
            print(f"No photos found in {args.source}; nothing was submitted.", file=sys.stderr)
            return EXIT_REFUSED
        print(f"Submitted {submitted} photos as job {job_id} to {api_url}.")

        def resubmit() -> str:
            # Read again, not kept (a list of any length costs one chunk); its bad rows were reported already.
            return submit(client, read(lambda *_: None), chunk_size=args.chunk_size, batch_size=args.batch_size)[0]

        return _follow(client, args, api_url, job_id, submitted, random_weights, resubmit=resubmit)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ApiError as exc:
        print(f"error: {exc.message}" if getattr(exc, "message", None) else f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.status == 0 else EXIT_REFUSED
    except TimeoutError as exc:
        print(f"error: {exc}; the job goes on in the workers.", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("interrupted; submitted batches go on in the workers.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if server is not None:
            server.shutdown()
        close = getattr(client, "close", None)
        if close:
            close()


def _follow(client, args: argparse.Namespace, api_url: str, job_id: str, submitted: int, random_weights: bool,
            resubmit=None) -> int:
    if args.no_wait:
        print(f"Follow it with GET {api_url}/v1/jobs/{job_id}.")
        return EXIT_OK
    job = wait_for(client, job_id, submitted, poll_interval=args.poll_interval, timeout=args.timeout,
                   resubmit=resubmit, stall_timeout=args.stall_timeout)
    print(summary(job, api_url=api_url))
    if random_weights:
        print(RANDOM_WEIGHTS_LINE)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
