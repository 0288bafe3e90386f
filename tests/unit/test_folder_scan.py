"""The ingest command's walk of a folder: unchanged files are not read, copies are named, ids come from bytes."""
from __future__ import annotations

import os

import pytest

from services.common.library import content_id, path_of
from tools import folder_ingest
from tools.folder_ingest import EXAMPLES, FolderScan, copies_summary, scan, walk
from tools.sources import SourceError, iter_image_files


def test_a_walk_names_photos_by_their_bytes_and_skips_unchanged_files(tmp_path):
    (tmp_path / "2023").mkdir()
    (tmp_path / "2024").mkdir()
    (tmp_path / "2023" / "IMG_0001.jpg").write_bytes(b"red picture")
    (tmp_path / "2024" / "IMG_0001.jpg").write_bytes(b"blue picture")
    (tmp_path / "2024" / "copy.jpg").write_bytes(b"red picture")
    (tmp_path / "notes.txt").write_text("not listed")
    found = scan(tmp_path, {}, upload=False, limit=None)
    ids = {path_of(r.photo_image_url): r.photo_id for r in found.records}
    assert ids == {str(tmp_path / "2023" / "IMG_0001.jpg"): content_id(b"red picture"),
                   str(tmp_path / "2024" / "IMG_0001.jpg"): content_id(b"blue picture"),
                   str(tmp_path / "2024" / "copy.jpg"): content_id(b"red picture")}
    assert found.copies == [(str(tmp_path / "2024" / "copy.jpg"), str(tmp_path / "2023" / "IMG_0001.jpg"))]
    assert "2024/copy.jpg = 2023/IMG_0001.jpg" in copies_summary(found.copies, tmp_path)

    stat = os.stat(tmp_path / "2023" / "IMG_0001.jpg")
    known = {str(tmp_path / "2023" / "IMG_0001.jpg"): {"path": str(tmp_path / "2023" / "IMG_0001.jpg"),
                                                      "photo_id": content_id(b"red picture"),
                                                      "size": stat.st_size, "mtime": stat.st_mtime}}
    again = scan(tmp_path, known, upload=False, limit=None)
    assert again.unchanged == 1 and len(again.records) == 2 and len(again.present) == 3
    # Rewritten (another size): read again.
    (tmp_path / "2023" / "IMG_0001.jpg").write_bytes(b"red picture, edited")
    assert scan(tmp_path, known, upload=False, limit=None).unchanged == 0
    assert len(scan(tmp_path, {}, upload=False, limit=1).records) == 1


def test_an_unreadable_file_is_sent_for_the_worker_to_explain_or_reported_when_uploading(tmp_path):
    os.symlink(tmp_path / "loop.jpg", tmp_path / "loop.jpg")
    sent = scan(tmp_path, {}, upload=False, limit=None)
    assert len(sent.records) == 1 and sent.records[0].photo_id.startswith("img-")
    uploading = scan(tmp_path, {}, upload=True, limit=None)
    assert not uploading.records and uploading.unreadable[0][0] == str(tmp_path / "loop.jpg")


def test_a_walk_in_chunks_holds_one_chunk_and_keeps_copies_as_a_count_plus_examples(tmp_path):
    for i in range(30):
        (tmp_path / f"IMG_{i:02d}.jpg").write_bytes(b"same picture" if i % 2 else f"picture {i}".encode())
    state = FolderScan()
    chunks = list(walk(tmp_path, {}, state, upload=False, limit=None, chunk_size=7, keep_present=False))
    assert [len(chunk) for chunk in chunks] == [7, 7, 7, 7, 2]
    # 15 files hold one picture: the first is sent, the 14 others are copies across chunks.
    assert state.copies_total == 14 and len(state.copies) == EXAMPLES and state.made == 30 and state.seen == 30
    assert not state.present  # nothing was known: nothing kept for a prune
    text = copies_summary(state.copies, tmp_path, total=state.copies_total)
    assert text.startswith("14 files are copies") and "IMG_03.jpg = IMG_01.jpg" in text and "and 9 more" in text


def test_the_walk_goes_in_the_stores_path_order_and_is_matched_against_a_streamed_listing(tmp_path, monkeypatch):
    # os.walk would give a.jpg, a0.jpg, then a/x.jpg; the store sorts a/x.jpg between them ('.' < '/' < '0').
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name, data in (("a.jpg", b"one"), ("a/x.jpg", b"two"), ("a0.jpg", b"three"), ("b.jpg", b"four"),
                       (".hidden/h.jpg", b"hidden")):
        (tmp_path / name).write_bytes(data)
    os.symlink(tmp_path / "a", tmp_path / "link")  # a link to a folder is not followed, as os.walk does not
    names = [str(path) for path in iter_image_files(tmp_path)]
    assert names == [str(tmp_path / n) for n in ("a.jpg", "a/x.jpg", "a0.jpg", "b.jpg")] == sorted(names)

    def row(name: str, data: bytes, size: int | None = None) -> dict:
        stat = os.stat(tmp_path / name) if (tmp_path / name).exists() else None
        return {"path": str(tmp_path / name), "photo_id": content_id(data),
                "size": size or (stat.st_size if stat else 1), "mtime": stat.st_mtime if stat else 1.0}

    listing = [row("a.jpg", b"one"), row("a/gone.jpg", b"gone"), row("a/x.jpg", b"two", size=99), row("b.jpg", b"four"),
               row("c.jpg", b"gone too")]
    read: list[str] = []

    def streamed():  # a generator: the walk must take it in order, as pages arrive
        for item in listing:
            read.append(item["path"])
            yield item

    state = FolderScan()
    sent = [record.file.path for chunk in walk(tmp_path, streamed(), state, upload=False, limit=None, chunk_size=10,
                                               keep_present=False) for record in chunk]
    assert sent == [str(tmp_path / "a/x.jpg"), str(tmp_path / "a0.jpg")]  # changed, and new
    assert state.unchanged == 2 and state.seen == 4 and not state.present and not state.first_path.keys() & {
        content_id(b"one"), content_id(b"four")}  # stored files are not held per file

    forgotten: list[list[str]] = []

    class Client:
        def forget_files(self, paths):
            forgotten.append(list(paths))
            return {"deleted": 1}

    monkeypatch.setattr(folder_ingest, "FORGET_CHUNK", 1)  # each gone file forgotten as the walk passes it
    assert folder_ingest.prune(Client(), tmp_path, iter(listing)) == (2, 2)
    assert forgotten == [[str(tmp_path / "a/gone.jpg")], [str(tmp_path / "c.jpg")]]


def test_a_listing_out_of_path_order_stops_the_run_with_a_sentence(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"one")
    (tmp_path / "c.jpg").write_bytes(b"three")
    rows = [{"path": str(tmp_path / "b.jpg"), "photo_id": "img-b", "size": 1, "mtime": 1.0},
            {"path": str(tmp_path / "a.jpg"), "photo_id": "img-a", "size": 1, "mtime": 1.0}]
    with pytest.raises(SourceError, match="out of path order"):
        list(walk(tmp_path, iter(rows), FolderScan(), upload=False, limit=None, chunk_size=10))
