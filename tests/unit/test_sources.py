"""Sources: Unsplash Lite TSV, the dataset zip, a URL list, a folder; bad rows reported and skipped."""
from __future__ import annotations

import zipfile

import pytest

from tools.sources import SMALL_IMAGE_QUERY, SourceError, open_source, source_kind

HEADER = ("photo_id\tphoto_url\tphoto_image_url\tphoto_submitted_at\tphoto_featured\tphoto_width\tphoto_height\t"
          "photo_aspect_ratio\tphoto_description\tphotographer_username\tphotographer_first_name\t"
          "photographer_last_name\tphoto_location_name\tphoto_location_country\tphoto_location_city\t"
          "stats_views\tai_description")


def row(photo_id, url, width="4000", description="a red boat"):
    return "\t".join([photo_id, f"https://unsplash.com/photos/{photo_id}", url, "2020-01-02 03:04:05", "t", width,
                      "3000", "1.33", description, "ana", "Ana", "Gómez", "Cádiz", "Spain", "Cádiz", "12",
                      "boat on the sea"])


def write_tsv(path, rows):
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def collect(source, **options):
    bad = []
    records = list(open_source(source, on_bad_row=lambda where, reason: bad.append((where, reason)), **options))
    return records, bad


def test_tsv_rows_map_onto_photo_records_with_the_small_image_url(tmp_path):
    path = write_tsv(tmp_path / "photos.tsv000", [row("abc", "https://images.unsplash.com/photo-1"),
                                                  row("def", "https://images.unsplash.com/photo-2?ixid=1")])
    records, bad = collect(path)
    assert bad == []
    assert [r.photo_id for r in records] == ["abc", "def"]
    first = records[0]
    assert first.photo_image_url == f"https://images.unsplash.com/photo-1?{SMALL_IMAGE_QUERY}"
    # A URL that already has a query is left alone.
    assert records[1].photo_image_url == "https://images.unsplash.com/photo-2?ixid=1"
    assert (first.photo_width, first.photo_height, first.photo_aspect_ratio) == (4000, 3000, 1.33)
    assert first.photographer_last_name == "Gómez" and first.photo_location_country == "Spain"
    assert first.ai_description == "boat on the sea" and first.photo_url.endswith("/abc")


def test_full_size_keeps_the_original_url_and_limit_stops_early(tmp_path):
    path = write_tsv(tmp_path / "photos.tsv000", [row(f"p{i}", f"https://img.test/{i}") for i in range(50)])
    records, _ = collect(path, small_images=False, limit=3)
    assert [r.photo_image_url for r in records] == ["https://img.test/0", "https://img.test/1", "https://img.test/2"]


def test_bad_rows_are_reported_and_skipped(tmp_path):
    path = write_tsv(tmp_path / "photos.tsv000", [
        row("good1", "https://img.test/1"),
        row("", "https://img.test/2"),                      # no id
        row("noturl", "ftp://img.test/3"),                  # not http(s)
        row("badwidth", "https://img.test/4", width="wide"),  # not a number
        row("good2", "https://img.test/5") + "\textra\tcells",  # more cells than the header
        row("good3", "https://img.test/6"),
    ])
    records, bad = collect(path)
    assert [r.photo_id for r in records] == ["good1", "good3"]
    assert len(bad) == 4
    assert all("line" in where for where, _ in bad)
    assert any("photo_id" in reason for _, reason in bad)
    assert any("badwidth" in reason for _, reason in bad)


def test_a_file_without_the_unsplash_header_is_refused(tmp_path):
    path = tmp_path / "photos.tsv000"
    path.write_text("id\turl\n1\thttps://x.test/a\n")
    with pytest.raises(SourceError, match="photo_id"):
        collect(path)


def test_the_dataset_zip_is_read_without_extracting(tmp_path):
    archive = tmp_path / "unsplash-research-dataset-lite-latest.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("keywords.tsv000", "photo_id\tkeyword\nabc\tboat\n")
        zf.writestr("photos.tsv000", "\n".join([HEADER, row("abc", "https://img.test/1"),
                                                row("def", "https://img.test/2")]) + "\n")
    assert source_kind(archive) == "zip"
    records, bad = collect(archive, limit=10)
    assert [r.photo_id for r in records] == ["abc", "def"] and bad == []


def test_a_zip_without_photos_tsv_says_so(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(SourceError, match="photos.tsv"):
        collect(archive)


def test_url_list_gives_stable_ids_and_skips_bad_lines(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("# my photos\nhttps://img.test/a.jpg\n\nnot a url\nhttp://img.test/b.png\n")
    records, bad = collect(path)
    again, _ = collect(path)
    assert [r.photo_image_url for r in records] == ["https://img.test/a.jpg", "http://img.test/b.png"]
    assert [r.photo_id for r in records] == [r.photo_id for r in again]
    assert len({r.photo_id for r in records}) == 2
    assert len(bad) == 1 and "line 4" in bad[0][0]


def test_a_served_folder_maps_files_under_its_url_named_by_their_bytes(tmp_path):
    folder = tmp_path / "pics"
    (folder / "sub dir").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "sub dir" / "b.PNG").write_bytes(b"\x89PNG")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(SourceError, match="without --base-url"):
        collect(folder)
    (folder / "sub dir" / "copy.jpg").write_bytes(b"\xff\xd8\xff")
    records, _ = collect(folder, base_url="http://10.0.0.5:9000/")
    assert [r.photo_image_url for r in records] == ["http://10.0.0.5:9000/a.jpg",
                                                    "http://10.0.0.5:9000/sub%20dir/b.PNG",
                                                    "http://10.0.0.5:9000/sub%20dir/copy.jpg"]
    # The copy of a.jpg is the same photo.
    assert [r.photo_id for r in records][0] == records[2].photo_id != records[1].photo_id


def test_a_missing_source_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        collect(tmp_path / "nope.tsv")


def test_unsplash_camera_and_position_columns_are_read(tmp_path):
    path = tmp_path / "photos.tsv"
    path.write_text("photo_id\tphoto_image_url\texif_camera_make\texif_camera_model\tphoto_location_latitude\t"
                    "photo_location_longitude\n"
                    "a\thttps://img.test/a\tCanon\tEOS 5D\t64.1466\t-21.9426\n"
                    "b\thttps://img.test/b\t\t\t\t\n"
                    "c\thttps://img.test/c\t\t\t95\t10\n")
    records, bad = collect(path)
    assert (records[0].exif_camera_make, records[0].exif_camera_model) == ("Canon", "EOS 5D")
    assert (records[0].photo_location_latitude, records[0].photo_location_longitude) == (64.1466, -21.9426)
    assert records[1].photo_location_latitude is None and records[1].exif_camera_make == ""
    assert [where for where, _ in bad] == ["photos.tsv line 4"] and "photo_location_latitude" in bad[0][1]
