"""Unsplash Lite's keywords.tsv (tools/unsplash_keywords.py through tools/sources.py): read from the
dataset zip or beside a photos.tsv, at most the 20 best per photo (a person's first, then by the higher
confidence), machine keywords under 20 dropped, only for the photos being read, a window at a time."""
from __future__ import annotations

import gzip
import zipfile

from tests.unit.test_sources import HEADER, collect, row
from tools.unsplash_keywords import best_keywords, keywords_text

KEYWORDS_HEADER = "photo_id\tkeyword\tai_service_1_confidence\tai_service_2_confidence\tsuggested_by_user"


def keyword_rows(photo_id: str, count: int = 30) -> list[str]:
    """`count` machine keywords of rising confidence (kw0 at 0 ... kw29 at 87), one a person suggested
    with no confidence, and one under the threshold with only the second service's confidence."""
    rows = [f"{photo_id}\tkw{i}\t{i * 3}\t\tf" for i in range(count)]
    rows.append(f"{photo_id}\tfrom a person\t\t\tt")
    rows.append(f"{photo_id}\tfaint\t\t19.9\tf")
    rows.append(f"{photo_id}\tsecond service\t\t95\tf")
    return rows


def test_keywords_in_the_zip_fill_photo_keywords_best_first(tmp_path):
    path = tmp_path / "unsplash-research-dataset-lite-latest.zip"
    photos = "\n".join([HEADER, row("p1", "https://img.test/1"), row("p2", "https://img.test/2"),
                        row("p3", "https://img.test/3")]) + "\n"
    first = "\n".join([KEYWORDS_HEADER, *keyword_rows("p1"), "p2\tboat\t50\t\tf", "zz\tother photo\t99\t\tt"])
    second = "\n".join([KEYWORDS_HEADER, "p2\tharbour, old\t\t40\tf", "p2\tboat\t\t90\tf"]) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photos.tsv000", photos)
        archive.writestr("keywords.tsv000", first + "\n")
        archive.writestr("keywords.tsv001.gz", gzip.compress(second.encode()))
    records, bad = collect(path)
    assert bad == []
    by_id = {r.photo_id: r.photo_keywords.split(",") if r.photo_keywords else [] for r in records}
    # A person's keyword first, then by confidence: second service 95, kw29 (87) ... 20 in all.
    assert by_id["p1"][:3] == ["from a person", "second service", "kw29"]
    assert len(by_id["p1"]) == 20 and by_id["p1"][-1] == "kw12"
    assert "faint" not in by_id["p1"] and "kw6" not in by_id["p1"]  # under 20: dropped
    # Across two files; a keyword seen twice keeps its better confidence; commas inside are spaces.
    assert by_id["p2"] == ["boat", "harbour old"]
    assert by_id["p3"] == []


def test_keywords_beside_a_photos_tsv_are_read_and_a_limit_reads_only_what_it_needs(tmp_path):
    (tmp_path / "photos.tsv").write_text("\n".join([HEADER, *(row(f"p{i}", f"https://img.test/{i}")
                                                              for i in range(5))]) + "\n", encoding="utf-8")
    (tmp_path / "keywords.tsv").write_text("\n".join([KEYWORDS_HEADER, "p0\tlighthouse\t80\t\tf",
                                                      "p4\tcliff\t80\t\tf"]) + "\n", encoding="utf-8")
    records, _ = collect(tmp_path / "photos.tsv", limit=2)
    assert [(r.photo_id, r.photo_keywords) for r in records] == [("p0", "lighthouse"), ("p1", "")]
    records, _ = collect(tmp_path / "photos.tsv")
    assert records[4].photo_keywords == "cliff"


def test_memory_is_bounded_to_the_photos_asked_for_and_twenty_each():
    rows = ({"photo_id": f"p{i % 1000}", "keyword": f"word{i}", "ai_service_1_confidence": str(20 + i // 1000 % 80),
             "suggested_by_user": "f"} for i in range(100_000))
    heaps = best_keywords(rows, wanted={"p1", "p2"})
    assert set(heaps) == {"p1", "p2"}
    assert all(len(heap) == 20 for heap in heaps.values())
    best = keywords_text(heaps["p1"]).split(",")
    confidences = [20 + int(word[4:]) // 1000 % 80 for word in best]
    assert confidences == list(range(99, 79, -1))


def test_the_sample_set_ships_keywords_for_what_each_picture_shows(tmp_path):
    from tools.sample_data import draw_photo, write_sample_set

    records, _ = collect(write_sample_set(tmp_path, 6, "http://127.0.0.1:9"))
    for index, record in enumerate(records):
        keywords = record.photo_keywords.split(",")
        words = draw_photo(index)[1].split()  # "a <colour> <shape> on a <colour> background"
        colour, shape, background = words[1], words[2], words[5]
        assert keywords[0] == colour  # a person's keyword comes first
        assert {colour, shape, background} <= set(keywords)
        assert "picture" not in keywords  # a machine's keyword at 12: dropped
    assert {"lisbon", "portugal"} <= set(records[0].photo_keywords.split(","))
