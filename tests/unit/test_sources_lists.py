"""CSV and JSON Lines URL lists: picked by extension, Unsplash Lite column names for metadata, a
missing photo_id made from the URL, bad rows reported with where and why and skipped."""
from __future__ import annotations

import json

import pytest

from tools.sources import SourceError, open_source, source_kind


def collect(source, **options):
    bad = []
    records = list(open_source(source, on_bad_row=lambda where, reason: bad.append((where, reason)), **options))
    return records, bad


def test_a_csv_list_reads_unsplash_named_columns_and_reports_bad_rows(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "photo_image_url,photo_id,photo_description,photographer_username,photo_location_country,photo_width,extra\n"
        "https://img.test/a.jpg,a1,\"A boat, red\",ana,Spain,4000.0,ignored\n"
        "https://img.test/b.jpg,,,,,,\n"
        "ftp://img.test/c.jpg,c1,,,,,\n"
        "https://img.test/d.jpg,d1,,,,wide,\n"
        "https://img.test/e.jpg,e1,,,,,,too many\n",
        encoding="utf-8")
    assert source_kind(path) == "csv"
    records, bad = collect(path)
    assert [r.photo_id for r in records][0] == "a1"
    first = records[0]
    assert (first.photo_description, first.photographer_username, first.photo_location_country,
            first.photo_width) == ("A boat, red", "ana", "Spain", 4000)
    # No photo_id: the URL's stable hash, the same on every run.
    assert records[1].photo_id.startswith("url-") and records[1].photo_id == collect(path)[0][1].photo_id
    assert records[1].photo_image_url == "https://img.test/b.jpg"  # a list's URLs are used as given
    assert [where for where, _ in bad] == ["mine.csv line 4", "mine.csv line 5", "mine.csv line 6"]
    assert "http(s) photo_image_url" in bad[0][1] and "photo_width" in bad[1][1] and "more columns" in bad[2][1]


def test_a_csv_without_the_url_column_is_refused_with_a_sentence(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("url,photo_id\nhttps://img.test/a.jpg,a\n")
    with pytest.raises(SourceError, match="no photo_image_url column"):
        collect(path)


@pytest.mark.parametrize("name", ["mine.jsonl", "mine.ndjson"])
def test_a_json_lines_list_reads_objects_and_reports_bad_lines(tmp_path, name):
    path = tmp_path / name
    lines = [
        json.dumps({"photo_image_url": "https://img.test/a.jpg", "photo_id": "a1", "photo_width": 640,
                    "photo_location_city": "Oslo", "photo_description": 42}),
        "",
        "{not json",
        json.dumps(["https://img.test/b.jpg"]),
        json.dumps({"photo_id": "no-url"}),
        json.dumps({"photo_image_url": "https://img.test/c.jpg"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert source_kind(path) == "jsonl"
    records, bad = collect(path)
    assert [r.photo_image_url for r in records] == ["https://img.test/a.jpg", "https://img.test/c.jpg"]
    assert (records[0].photo_width, records[0].photo_location_city, records[0].photo_description) == (640, "Oslo",
                                                                                                        "42")
    assert [where for where, _ in bad] == [f"{name} line 3", f"{name} line 4", f"{name} line 5"]
    assert "not valid JSON" in bad[0][1] and "not a JSON object" in bad[1][1] and "photo_image_url" in bad[2][1]
