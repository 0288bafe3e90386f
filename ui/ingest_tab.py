"""The Ingest tab: photos dropped on the page, a URL list or an Unsplash photos.tsv, or a folder on the
server; each becomes a job, watched to the end.

The file is read with the ingest command's own readers (`tools/sources.py`) and posted in chunks the
way `make ingest` does (`tools/ingest.py`'s `submit`), through `ApiClient.ingest`; a `gr.Timer` then
polls `GET /v1/jobs/{id}` (`ApiClient.job`) and shows what the command shows: progress, ingested,
skipped and failed counts, the rate in photos/s, the time left, and the failures grouped by reason.
The gateway takes writes only with an API key: the UI sends `UI_API_KEY`. Under the gateway's rate
limit (429) the polling waits out `Retry-After` between ticks, saying so, and never gives up the job.

Photos dropped on the page go through the upload route the ingest command uses for a folder the
workers cannot read (`POST /v1/ingest/upload`, `ApiClient.upload`), a group at a time, each recorded
under its own name (a browser gives no path). A folder on the server, typed as a path, is walked as
`make ingest SOURCE=folder` walks it (tools/folder_ingest.py): it must lie under LIBRARY_ROOTS, so its
new and changed files go as paths that the workers read where they are, never uploaded from here. The
UI process reads the folder too, to name each file by its bytes (under docker compose, mount it into
the ui container as well).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import gradio as gr

from services.common.api_client import ApiError
from tools.folder_ingest import UPLOAD_GROUP, FolderScan, stored_files, walk
from tools.ingest import MAX_CHUNK, submit
from tools.sources import IMAGE_SUFFIXES, SourceError, open_source
from ui.formatting import markdown_text
from ui.wiring import on

log = logging.getLogger(__name__)

BATCH_SIZE = 32  # photos per worker task, as `make ingest` sends by default
POLL_S = 1.0
BAD_ROWS_SHOWN = 5
FAILURE_REASONS_SHOWN = 10
NAMES_SHOWN = 3
# Uploaded photos waiting for the workers at most, as `make ingest` keeps them (its --window): their
# bytes wait in Redis until a worker has read them.
UPLOAD_WINDOW = 256
CHOOSE_FILE = "Choose photos, a URL list (.txt, one image URL a line) or an Unsplash photos.tsv to upload first."
CHOOSE_FOLDER = "Type the path of a folder on the server first, under LIBRARY_ROOTS (for example /srv/photos/2024)."
HELP = ("Add photos to the index, then watch the job: **drop photos** here (they are uploaded), or a URL list "
        "(.txt, one image URL a line) or an Unsplash Lite `photos.tsv`; or type the path of a **folder on the "
        "server** under `LIBRARY_ROOTS`, whose files the workers read where they are (a second run sends only "
        "new and changed files).")

Updates = dict[str, Any]


def rate_and_eta(job: dict[str, Any]) -> tuple[float | None, float | None]:
    """Photos per second since the job started, and the seconds left at that rate (None when unknown):
    the gateway's own `rate` and `eta_s` when it sends them, else worked out from the job's own clock
    (created_at, updated_at), so the UI's clock never matters."""
    processed = job.get("succeeded", 0) + job.get("skipped", 0) + job.get("failed", 0)
    done = job.get("state") == "done"
    if job.get("rate"):
        eta = job.get("eta_s")
        return float(job["rate"]), 0.0 if done else (float(eta) if eta is not None else None)
    elapsed = float(job.get("updated_at") or 0) - float(job.get("created_at") or 0)
    if processed <= 0 or elapsed <= 0:
        return None, None
    rate = processed / elapsed
    left = max(int(job.get("total") or 0) - processed, 0)
    return rate, (0.0 if done else left / rate)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_progress(job: dict[str, Any]) -> str:
    """The job in one line, as `make ingest` shows it: how far, what happened to each photo, how fast."""
    total = int(job.get("total") or 0)
    processed = job.get("succeeded", 0) + job.get("skipped", 0) + job.get("failed", 0)
    done = job.get("state") == "done"
    percent = f" ({100 * processed / total:.0f}%)" if total else ""
    head = (f"**Done**: job `{job['job_id']}`" if done
            else f"**{str(job.get('state', 'queued')).capitalize()}**: job `{job['job_id']}`, "
                 f"{processed:,} of {total:,} photos{percent}")
    parts = [head, f"{job.get('succeeded', 0):,} ingested", f"{job.get('skipped', 0):,} skipped (already stored)",
             f"{job.get('failed', 0):,} failed"]
    rate, left = rate_and_eta(job)
    if rate is not None:
        parts.append(f"{rate:.1f} photos/s")
        if done:
            elapsed = float(job["updated_at"]) - float(job["created_at"])
            parts.append(f"took {duration(elapsed)}")
        elif left is not None:
            parts.append(f"about {duration(left)} left")
    return " · ".join(parts) + "."


def failures_by_reason(job: dict[str, Any]) -> str:
    """The failures grouped by their code, most first, each with one example of its reason: the gateway's
    `failures_by_reason` counts when it sends them (every failure), else the listed failures counted."""
    failures = job.get("failures") or []
    counts = Counter(job.get("failures_by_reason") or
                     [str(failure.get("code") or "failed") for failure in failures])
    if not counts:
        return ""
    example: dict[str, str] = {}
    for failure in failures:
        example.setdefault(str(failure.get("code") or "failed"), str(failure.get("reason") or ""))
    lines = ["| reason | photos | for example |", "| --- | ---: | --- |"]
    for code, count in counts.most_common(FAILURE_REASONS_SHOWN):
        words = markdown_text(example.get(code, "")[:200]).replace("|", "/")
        lines.append(f"| {markdown_text(code)} | {count:,} | {words} |")
    grouped = sum(counts.values())
    if int(job.get("failed") or 0) > grouped:
        lines.append(f"\nThe first {grouped:,} of {int(job['failed']):,} failures are grouped here.")
    return "**Failures by reason**\n\n" + "\n".join(lines)


def rate_limit_line(seconds: float, reason: str | None) -> str:
    because = f" ({markdown_text(reason.rstrip('.'))})" if reason else ""
    return f"⏳ Waiting {round(seconds)} s for the gateway's rate limit{because}; the job goes on meanwhile."


def _processed(job: dict[str, Any]) -> int:
    return int(job.get("succeeded", 0)) + int(job.get("skipped", 0)) + int(job.get("failed", 0))


def progress_bar(job: dict[str, Any]) -> str:
    total = max(int(job.get("total") or 0), 1)
    processed = job.get("succeeded", 0) + job.get("skipped", 0) + job.get("failed", 0)
    return f'<progress value="{processed}" max="{total}" style="width:100%; height:18px;"></progress>'


class IngestPanel:
    """The Ingest tab's behaviour; each event returns updates keyed by output name: ingest_status,
    ingest_bar, ingest_failures, ingest_job, ingest_timer."""

    def __init__(self, client: Any, stats_line: Any = None):
        self.client = client
        # The page's stats line (`SearchPage.stats_line`), refreshed when a job is done.
        self.stats_line = stats_line
        self.clock = time.monotonic  # when a rate-limited poll may ask again (a test sets its own)

    def _warning(self, message: str, **more: Any) -> Updates:
        gr.Warning(message)
        return {"ingest_status": f"⚠️ {markdown_text(message)}", **more}

    def start(self, uploads: str | list[str] | None) -> Updates:
        """Submit what was dropped on the page as one job and start watching it: URL lists and photos.tsv
        files read with the ingest command's readers, photos uploaded."""
        paths = [Path(upload) for upload in ([uploads] if isinstance(uploads, str) else uploads or [])]
        if not paths:
            return self._warning(CHOOSE_FILE)
        photos = [path for path in paths if path.suffix.lower() in IMAGE_SUFFIXES]
        path = next((path for path in paths if path not in photos), None)  # the list being read, for errors
        bad_rows: list[str] = []
        job_id, submitted = None, 0
        try:
            for path in [path for path in paths if path not in photos]:
                records = open_source(path, on_bad_row=lambda where, reason: bad_rows.append(f"{where}: {reason}"))
                job_id, count = submit(self.client, records, chunk_size=MAX_CHUNK, batch_size=BATCH_SIZE,
                                       job_id=job_id)
                submitted += count
            if photos:
                job_id = self._upload(photos, job_id, sent=submitted)
                submitted += len(photos)
        except SourceError as error:
            return self._warning(str(error))
        except UnicodeDecodeError:
            return self._warning(f"{path.name} is not a text file; upload photos, a URL list or an Unsplash "
                                 "photos.tsv.")
        except ApiError as error:
            log.info("ingest refused %s %s: %s", error.status, error.code, error.message)
            return self._warning(error.message or f"The gateway answered with status {error.status}.")
        except Exception:  # noqa: BLE001 - a person sees a sentence, the log keeps the traceback
            log.exception("ingest from the UI failed")
            return self._warning("Something went wrong while reading the files; it has been logged.")
        skipped = ""
        if bad_rows:
            shown = "; ".join(markdown_text(row) for row in bad_rows[:BAD_ROWS_SHOWN])
            more = f" and {len(bad_rows) - BAD_ROWS_SHOWN} more" if len(bad_rows) > BAD_ROWS_SHOWN else ""
            skipped = f" Skipped {len(bad_rows)} line{'s' if len(bad_rows) != 1 else ''}: {shown}{more}."
        names = ", ".join(markdown_text(path.name) for path in paths[:NAMES_SHOWN])
        names += f" and {len(paths) - NAMES_SHOWN} more" if len(paths) > NAMES_SHOWN else ""
        if not job_id:
            return self._warning(f"No photos found in {names}; nothing was submitted.{skipped}")
        how = "" if not photos else " (uploaded)" if len(photos) == submitted else f" ({len(photos):,} uploaded)"
        return self._watch(job_id, submitted, f"from {names} as job `{job_id}`{how}.{skipped}")

    def _upload(self, photos: list[Path], job_id: str | None, sent: int = 0) -> str | None:
        """Upload the photos into `job_id` (else a new job, which holds `sent` photos already), a group at a
        time as `make ingest` uploads a folder's files, with at most UPLOAD_WINDOW of them waiting for the
        workers; returns the job's id."""
        for start in range(0, len(photos), UPLOAD_GROUP):
            while job_id and sent + start - _processed(self.client.job(job_id)) > UPLOAD_WINDOW:
                time.sleep(POLL_S)
            with ExitStack() as files:
                parts = []
                for path in photos[start:start + UPLOAD_GROUP]:
                    stat = path.stat()
                    photo = files.enter_context(open(path, "rb"))  # noqa: SIM115 - the stack closes it
                    parts.append((path.name, photo, {"path": path.name, "size": stat.st_size, "mtime": stat.st_mtime}))
                job_id = self.client.upload(parts, job_id=job_id, batch_size=BATCH_SIZE)["job_id"]
        return job_id

    def start_folder(self, folder: str | None) -> Updates:
        """Walk a folder on the server as `make ingest SOURCE=folder` does and send its new and changed
        files as paths the workers read: only a folder under LIBRARY_ROOTS, nothing is uploaded from here."""
        text = (folder or "").strip()
        if not text:
            return self._warning(CHOOSE_FOLDER)
        path = Path(text).expanduser()
        if not path.is_absolute():
            return self._warning(f"{text} is a relative path; type the folder's whole path, from /.")
        if not path.is_dir():
            return self._warning(f"{path} is not a folder this page can read; check the path (under docker "
                                 "compose, the folder must be mounted into the ui container too).")
        found, job_id = FolderScan(), None
        try:
            # The stored files come a page at a time, matched against the walk as both go.
            answer, known = stored_files(self.client, str(path))
            if not answer["readable"]:
                return self._warning(f"{answer['reason']} Or drop its photos on this page to upload them.")
            for records in walk(path, known, found, upload=False, limit=None, chunk_size=MAX_CHUNK,
                                keep_present=False):
                job_id, _ = submit(self.client, records, chunk_size=MAX_CHUNK, batch_size=BATCH_SIZE, job_id=job_id)
        except ApiError as error:
            log.info("folder ingest refused %s %s: %s", error.status, error.code, error.message)
            return self._warning(error.message or f"The gateway answered with status {error.status}.")
        except Exception:  # noqa: BLE001 - a person sees a sentence, the log keeps the traceback
            log.exception("folder ingest from the UI failed")
            return self._warning("Something went wrong while reading the folder; it has been logged.")
        where = markdown_text(str(path))
        if not job_id:
            if not found.seen:
                return self._warning(f"No photos found in {path}; nothing was submitted.")
            photos = f"its {found.seen:,} photo is" if found.seen == 1 else f"its {found.seen:,} photos are"
            return {"ingest_status": f"Nothing new in {where}: {photos} stored and unchanged."}
        unchanged = f" {found.unchanged:,} unchanged since the last run were not sent again." if found.unchanged else ""
        return self._watch(job_id, found.made, f"from {where} as job `{job_id}` (read by the workers where they "
                                               f"are).{unchanged}")

    def _watch(self, job_id: str, submitted: int, what: str) -> Updates:
        """The job just submitted, said and watched from now on."""
        return {"ingest_status": f"Submitted {submitted:,} photo{'s' if submitted != 1 else ''} {what}",
                "ingest_job": {"job_id": job_id, "submitted": submitted},
                "ingest_progress": "Waiting for the workers…", "ingest_bar": "", "ingest_failures": "",
                "ingest_timer": gr.Timer(active=True)}

    def poll(self, job: dict | None) -> Updates:
        """One look at the job: progress, rate, time left, failures; the timer stops when it is done."""
        if not job or not job.get("job_id"):
            return {"ingest_timer": gr.Timer(active=False)}
        left = float(job.get("rate_limited_until") or 0) - self.clock()
        if left > 0:  # not asked again before Retry-After: each refused poll would only prolong the wait
            return {"ingest_progress": rate_limit_line(left, job.get("rate_limit_reason"))}
        try:
            # Not waited out inside the client: this tick would hold the page's queue for that long, silent.
            state = self.client.job(job["job_id"], rate_limit_wait=0)
        except ApiError as error:
            if error.status == 429:
                wait = max(float(error.retry_after or 0), POLL_S)
                job = {**job, "rate_limited_until": self.clock() + wait, "rate_limit_reason": error.message}
                return {"ingest_progress": rate_limit_line(wait, error.message), "ingest_job": job}
            if error.status == 404:
                return self._warning(f"Job {job['job_id']} is no longer known to the gateway (jobs expire).",
                                     ingest_timer=gr.Timer(active=False), ingest_job=None)
            # Anything else may pass (a restart, a timeout): say so and keep watching.
            return {"ingest_progress": f"⚠️ {markdown_text(error.message)} Still trying…"}
        except Exception:  # noqa: BLE001 - a person sees a sentence, the log keeps the traceback
            log.exception("polling job %s failed", job["job_id"])
            return {"ingest_progress": "⚠️ Something went wrong while reading the job's progress; still trying…"}
        done = state.get("state") == "done"
        if done and self.stats_line:
            return {"ingest_progress": job_progress(state), "ingest_bar": progress_bar(state),
                    "ingest_failures": failures_by_reason(state), "ingest_timer": gr.Timer(active=False),
                    "stats": self.stats_line(refresh=True)}
        return {"ingest_progress": job_progress(state), "ingest_bar": progress_bar(state),
                "ingest_failures": failures_by_reason(state), **({"ingest_timer": gr.Timer(active=False)} if done else {})}


def ingest_tab(panel: IngestPanel, stats: Any) -> None:
    """The tab's layout and events; call inside `with gr.Tab(...)`. `stats` is the page's stats line."""
    gr.Markdown(HELP, elem_id="ingest-help")
    upload = gr.File(label="Photos, a URL list or photos.tsv", file_count="multiple", type="filepath",
                     file_types=["image", ".txt", ".tsv", ".gz", ".zip", ".csv", ".jsonl", ".ndjson"],
                     elem_id="ingest-file")
    start = gr.Button("Start ingesting", variant="primary", elem_id="ingest-button")
    with gr.Row(equal_height=True):
        folder = gr.Textbox(label="Or a folder on the server, under LIBRARY_ROOTS", placeholder="/srv/photos/2024",
                            elem_id="ingest-folder", scale=4)
        from_folder = gr.Button("Ingest the folder", elem_id="ingest-folder-button", scale=1)
    status = gr.Markdown("", elem_id="ingest-status")
    bar = gr.HTML("", elem_id="ingest-bar")
    progress = gr.Markdown("", elem_id="ingest-progress")
    failures = gr.Markdown("", elem_id="ingest-failures")
    job = gr.State(None)
    timer = gr.Timer(POLL_S, active=False)
    watched = {"ingest_progress": progress, "ingest_bar": bar, "ingest_failures": failures,
               "ingest_timer": timer, "ingest_status": status, "ingest_job": job}
    on(start.click, panel.start, [upload], watched)
    on([from_folder.click, folder.submit], panel.start_folder, [folder], watched)
    on(timer.tick, panel.poll, [job], {**watched, "stats": stats}, show_progress="hidden")
