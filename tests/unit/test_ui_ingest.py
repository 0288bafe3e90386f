"""Unit tests of the Ingest tab (ui/ingest_tab.py): an uploaded URL list or photos.tsv becomes one job,
and polling it shows progress, rate, time left and failures by reason. Driven with a fake client."""
from __future__ import annotations

import pytest

from services.common.api_client import ApiError
from tests.unit.ui_support import FakeClient, job_record
from ui.ingest_tab import CHOOSE_FILE, IngestPanel, failures_by_reason, job_progress

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_url_list_is_submitted_as_one_job_and_watched(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("# my photos\nhttp://img.test/a.jpg\nnot a url\nhttps://img.test/b.jpg\n")
    client = FakeClient()
    out = IngestPanel(client).start(str(urls))
    assert [photo["photo_image_url"] for photo in client.ingested] == ["http://img.test/a.jpg", "https://img.test/b.jpg"]
    assert out["ingest_job"] == {"job_id": "job-1", "submitted": 2}
    assert out["ingest_timer"].active is True
    assert out["ingest_status"].startswith("Submitted 2 photos from urls.txt as job `job-1`. Skipped 1 line: ")
    assert "is not an http(s) URL" in out["ingest_status"]


def test_an_unsplash_tsv_keeps_its_photo_ids(tmp_path):
    tsv = tmp_path / "photos.tsv"
    tsv.write_text("photo_id\tphoto_image_url\tphoto_description\nabc\thttps://images.unsplash.com/x\ta cat\n")
    client = FakeClient()
    IngestPanel(client).start(str(tsv))
    assert client.ingested[0]["photo_id"] == "abc" and client.ingested[0]["photo_description"] == "a cat"


def test_no_file_an_empty_list_or_a_refusal_is_a_sentence(tmp_path):
    client = FakeClient()
    panel = IngestPanel(client)
    assert CHOOSE_FILE in panel.start(None)["ingest_status"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert "No photos found in empty.txt; nothing was submitted." in panel.start(str(empty))["ingest_status"]
    urls = tmp_path / "urls.txt"
    urls.write_text("http://img.test/a.jpg\n")
    client.error = ApiError(401, "unauthorized", "This endpoint needs an API key.")
    out = panel.start(str(urls))
    assert out["ingest_status"] == "⚠️ This endpoint needs an API key." and "ingest_job" not in out


def test_progress_rate_and_time_left_come_from_the_job():
    running = job_record(total=100, succeeded=30, skipped=5, failed=5, created_at=1000.0, updated_at=1010.0)
    assert job_progress(running) == ("**Running**: job `job-1`, 40 of 100 photos (40%) · 30 ingested · "
                                     "5 skipped (already stored) · 5 failed · 4.0 photos/s · about 15 s left.")
    done = job_record(state="done", total=100, succeeded=95, failed=5, created_at=1000.0, updated_at=1125.0)
    assert job_progress(done).endswith("95 ingested · 0 skipped (already stored) · 5 failed · 0.8 photos/s · "
                                       "took 2 min 05 s.")


def test_the_gateways_own_rate_eta_and_counts_by_reason_come_first():
    job = job_record(total=100, succeeded=20, failed=30, rate=2.5, eta_s=20.0, failures_by_reason={"http_404": 30},
                     failures=[{"photo_id": "p", "code": "http_404", "reason": "HTTP 404"}])
    assert job_progress(job).endswith("30 failed · 2.5 photos/s · about 20 s left.")
    assert "| http\\_404 | 30 | HTTP 404 |" in failures_by_reason(job)


def test_failures_are_grouped_by_reason():
    failures = [{"photo_id": f"p{n}", "code": "fetch_failed", "reason": f"HTTP 404 from http://x/{n}"}
                for n in range(3)] + [{"photo_id": "q", "code": "bad_image", "reason": "not an image"}]
    table = failures_by_reason(job_record(failed=4, failures=failures))
    assert "| fetch\\_failed | 3 | HTTP 404 from http://x/0 |" in table
    assert "| bad\\_image | 1 | not an image |" in table
    assert failures_by_reason(job_record()) == ""


def test_polling_stops_when_the_job_is_done_and_keeps_going_through_a_hiccup():
    client = FakeClient()
    client.jobs = [job_record(succeeded=4), job_record(state="done", succeeded=10, updated_at=1005.0)]
    panel = IngestPanel(client)
    first = panel.poll({"job_id": "job-1"})
    assert "4 of 10 photos" in first["ingest_progress"] and "ingest_timer" not in first
    last = panel.poll({"job_id": "job-1"})
    assert last["ingest_progress"].startswith("**Done**") and last["ingest_timer"].active is False
    assert 'value="10" max="10"' in last["ingest_bar"]
    client.job_error = ApiError(0, "timeout", "The gateway did not answer in time.")
    assert "Still trying" in panel.poll({"job_id": "job-1"})["ingest_progress"]
    client.job_error = ApiError(404, "not_found", "No such job.")
    gone = panel.poll({"job_id": "job-1"})
    assert "no longer known" in gone["ingest_status"] and gone["ingest_timer"].active is False


def test_a_finished_job_refreshes_the_stats_line():
    client = FakeClient()
    client.jobs = [job_record(state="done", succeeded=10, updated_at=1005.0)]
    out = IngestPanel(client, stats_line=lambda refresh=False: f"refreshed={refresh}").poll({"job_id": "job-1"})
    assert out["stats"] == "refreshed=True" and out["ingest_timer"].active is False


def test_the_tab_is_wired_to_the_panel_and_can_be_turned_off():
    from ui.app import build_app
    from ui.config import UISettings

    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    outputs = {fn.fn.__name__: {block.elem_id for block in fn.outputs} for fn in app.fns.values()}
    assert {"ingest-status", "ingest-progress", "ingest-failures", "stats"} <= outputs["poll"]
    assert {"ingest-status", "ingest-progress"} <= outputs["start"]
    hidden = build_app(UISettings(api_url="http://127.0.0.1:1", ingest_tab=False, _env_file=None), client=FakeClient())
    assert "poll" not in {fn.fn.__name__ for fn in hidden.fns.values()}
    assert "ingest-tab" not in {block.elem_id for block in hidden.blocks.values()}


def test_polling_waits_out_the_rate_limit_says_so_and_does_not_ask_again_before():
    client = FakeClient()
    client.job_error = ApiError(429, "rate_limited", "Too many reads: this gateway allows 6 reads per minute per "
                                                     "API key; try again in 30 s.", retry_after=30)
    panel = IngestPanel(client)
    now = [1000.0]
    panel.clock = lambda: now[0]
    job = {"job_id": "job-1", "submitted": 10}
    waiting = panel.poll(job)
    assert "Waiting 30 s for the gateway's rate limit" in waiting["ingest_progress"]
    assert "ingest_timer" not in waiting and "ingest_status" not in waiting  # still watching, nothing failed
    job = waiting["ingest_job"]
    asked = len(client.calls)
    client.job_error = None
    now[0] += 12
    later = panel.poll(job)
    assert len(client.calls) == asked  # the gateway is not asked again before Retry-After
    assert "Waiting 18 s for the gateway's rate limit" in later["ingest_progress"]
    now[0] += 18
    again = panel.poll(later.get("ingest_job", job))
    assert len(client.calls) == asked + 1 and again["ingest_progress"].startswith("**Running**")
    assert "0 of 10 photos" in again["ingest_progress"]
