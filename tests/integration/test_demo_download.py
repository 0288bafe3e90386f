"""`make demo`'s dataset download against a local HTTP server serving a generated zip (never the
internet): a progress bar, resuming with HTTP Range after an interruption (in the same run and in a
later one), starting over when the server ignores Range, and a damaged zip deleted with a sentence."""
from __future__ import annotations

import http.server
import io
import re
import threading
import zipfile

import pytest

from tools.download import DownloadError, download


def make_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("photos.tsv000", "photo_id\tphoto_image_url\n" + "".join(
            f"p{i}\thttps://img.test/{i}.jpg\n" for i in range(20_000)))
    return buffer.getvalue()


class Server:
    """Serves one body at /data.zip. `ranges`: honour Range requests; `cut_first`: the first
    response announces the whole length but closes after this many bytes."""

    def __init__(self, body: bytes, *, ranges: bool = True, cut_first: int | None = None):
        self.body, self.ranges, self.cut_first = body, ranges, cut_first
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                asked = self.headers.get("Range")
                server.requests.append(asked)
                start = 0
                found = re.match(r"bytes=(\d+)-$", asked or "")
                if server.ranges and found:
                    start = int(found.group(1))
                    if start >= len(server.body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                else:
                    self.send_response(200)
                part = server.body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.cut_first is not None and len(server.requests) == 1:
                    part = part[:server.cut_first]
                    self.close_connection = True
                self.wfile.write(part)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/data.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def body():
    return make_zip()


def serve(request, body, **options) -> Server:
    server = Server(body, **options)
    request.addfinalizer(server.close)
    return server


def test_a_download_shows_its_size_and_lands_whole(request, body, tmp_path, capfd):
    server = serve(request, body)
    target = download(server.url, tmp_path / "data.zip", retry_pause_s=0)
    assert target.read_bytes() == body and not (tmp_path / "data.zip.part").exists()
    err = capfd.readouterr().err
    size = f"{len(body) / 1024:.0f}k"  # tqdm's size, in KiB
    assert "data.zip" in err and "100%" in err and f"{size}/{size}" in err and "B/s" in err
    # Already there and sound: nothing is fetched again.
    download(server.url, target, retry_pause_s=0)
    assert len(server.requests) == 1


def test_an_interrupted_download_resumes_with_a_range_request(request, body, tmp_path, capfd):
    server = serve(request, body, cut_first=len(body) // 3)
    target = download(server.url, tmp_path / "data.zip", retry_pause_s=0)
    assert target.read_bytes() == body
    assert server.requests == [None, f"bytes={len(body) // 3}-"]
    assert "resuming" in capfd.readouterr().err


def test_a_part_file_from_an_earlier_run_is_continued(request, body, tmp_path):
    server = serve(request, body)
    (tmp_path / "data.zip.part").write_bytes(body[:1000])
    assert download(server.url, tmp_path / "data.zip", retry_pause_s=0).read_bytes() == body
    assert server.requests == ["bytes=1000-"]


def test_a_server_without_range_support_starts_over(request, body, tmp_path):
    server = serve(request, body, ranges=False, cut_first=len(body) // 2)
    (tmp_path / "data.zip.part").write_bytes(b"stale bytes from another file")
    assert download(server.url, tmp_path / "data.zip", retry_pause_s=0).read_bytes() == body
    assert len(server.requests) == 2 and all(asked and asked.startswith("bytes=") for asked in server.requests)


def test_a_damaged_zip_is_deleted_with_a_sentence(request, body, tmp_path):
    damaged = bytearray(body)
    damaged[200:210] = b"0123456789"  # inside the member's data: its CRC no longer matches
    server = serve(request, bytes(damaged))
    with pytest.raises(DownloadError, match="not a valid zip .* deleted. Run the command again"):
        download(server.url, tmp_path / "data.zip", retry_pause_s=0)
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_keeps_failing_keeps_its_bytes_and_says_so(request, body, tmp_path):
    server = serve(request, body)
    server.close()
    with pytest.raises(DownloadError, match="after 2 attempts.*running the command again resumes"):
        download(server.url, tmp_path / "data.zip", attempts=2, retry_pause_s=0, timeout=2)
