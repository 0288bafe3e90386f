"""The ingest command's walk of a folder: unchanged files are not read, copies are named, ids come from bytes."""
from __future__ import annotations

import os

from services.common.library import content_id, path_of
from tools.folder_ingest import EXAMPLES, FolderScan, copies_summary, scan, walk


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
