"""The Ingest tab: upload a URL list or an Unsplash photos.tsv, start a job, and watch it to the end.

The file is read with the ingest command's own readers (`tools/sources.py`) and posted in chunks the
way `make ingest` does (`tools/ingest.py`'s `submit`), through `ApiClient.ingest`; a `gr.Timer` then
polls `GET /v1/jobs/{id}` (`ApiClient.job`) and shows what the command shows: progress, ingested,
skipped and failed counts, the rate in photos/s, the time left, and the failures grouped by reason.
The gateway takes writes only with an API key: the UI sends `UI_API_KEY`.

Not offered here yet: ingesting a folder that the server itself can read. Workers fetch every image
over HTTP, so a folder has to be served first; until the gateway can take a server-side folder,
`make ingest SOURCE=/path/to/folder` (with `--serve`) does it from the command line.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import gradio as gr

from services.common.api_client import ApiError
from tools.ingest import MAX_CHUNK, submit
from tools.sources import SourceError, open_source
from ui.formatting import markdown_text
from ui.wiring import on

log = logging.getLogger(__name__)

BATCH_SIZE = 32  # photos per worker task, as `make ingest` sends by default
POLL_S = 1.0
BAD_ROWS_SHOWN = 5
FAILURE_REASONS_SHOWN = 10
CHOOSE_FILE = "Choose a URL list (.txt, one image URL a line) or an Unsplash photos.tsv to upload first."
FOLDER_NOTE = ("A folder on the server cannot be ingested from this page yet: workers fetch images over HTTP, "
               "so run `make ingest SOURCE=/path/to/folder` (it serves the folder itself with `--serve`).")

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

    def _warning(self, message: str, **more: Any) -> Updates:
        gr.Warning(message)
        return {"ingest_status": f"⚠️ {markdown_text(message)}", **more}

    def start(self, upload: str | None) -> Updates:
        """Read the uploaded file, submit its photos as one job, and start watching it."""
        if not upload:
            return self._warning(CHOOSE_FILE)
        path = Path(upload)
        bad_rows: list[str] = []
        try:
            records = open_source(path, on_bad_row=lambda where, reason: bad_rows.append(f"{where}: {reason}"))
            job_id, submitted = submit(self.client, records, chunk_size=MAX_CHUNK, batch_size=BATCH_SIZE)
        except SourceError as error:
            return self._warning(str(error))
        except UnicodeDecodeError:
            return self._warning(f"{path.name} is not a text file; upload a URL list or an Unsplash photos.tsv.")
        except ApiError as error:
            log.info("ingest refused %s %s: %s", error.status, error.code, error.message)
            return self._warning(error.message or f"The gateway answered with status {error.status}.")
        except Exception:  # noqa: BLE001 - a person sees a sentence, the log keeps the traceback
            log.exception("ingest from the UI failed")
            return self._warning("Something went wrong while reading the file; it has been logged.")
        skipped = ""
        if bad_rows:
            shown = "; ".join(markdown_text(row) for row in bad_rows[:BAD_ROWS_SHOWN])
            more = f" and {len(bad_rows) - BAD_ROWS_SHOWN} more" if len(bad_rows) > BAD_ROWS_SHOWN else ""
            skipped = f" Skipped {len(bad_rows)} line{'s' if len(bad_rows) != 1 else ''}: {shown}{more}."
        if not job_id:
            return self._warning(f"No photos found in {path.name}; nothing was submitted.{skipped}")
        status = f"Submitted {submitted:,} photo{'s' if submitted != 1 else ''} from {markdown_text(path.name)} as job `{job_id}`.{skipped}"
        return {"ingest_status": status, "ingest_job": {"job_id": job_id, "submitted": submitted},
                "ingest_progress": "Waiting for the workers…", "ingest_bar": "", "ingest_failures": "",
                "ingest_timer": gr.Timer(active=True)}

    def poll(self, job: dict | None) -> Updates:
        """One look at the job: progress, rate, time left, failures; the timer stops when it is done."""
        if not job or not job.get("job_id"):
            return {"ingest_timer": gr.Timer(active=False)}
        try:
            state = self.client.job(job["job_id"])
        except ApiError as error:
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
    gr.Markdown("Add photos to the index: upload a text file of image URLs (one a line) or an Unsplash Lite "
                "`photos.tsv`, then watch the job. " + FOLDER_NOTE, elem_id="ingest-help")
    upload = gr.File(label="URL list or photos.tsv", file_types=[".txt", ".tsv", ".gz", ".zip", ".csv", ".jsonl", ".ndjson"],
                     type="filepath", elem_id="ingest-file")
    start = gr.Button("Start ingesting", variant="primary", elem_id="ingest-button")
    status = gr.Markdown("", elem_id="ingest-status")
    bar = gr.HTML("", elem_id="ingest-bar")
    progress = gr.Markdown("", elem_id="ingest-progress")
    failures = gr.Markdown("", elem_id="ingest-failures")
    job = gr.State(None)
    timer = gr.Timer(POLL_S, active=False)
    watched = {"ingest_progress": progress, "ingest_bar": bar, "ingest_failures": failures,
               "ingest_timer": timer, "ingest_status": status, "ingest_job": job}
    on(start.click, panel.start, [upload], watched)
    on(timer.tick, panel.poll, [job], {**watched, "stats": stats}, show_progress="hidden")
