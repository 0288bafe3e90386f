"""`make eval` (bench.eval) and `make eval-download` (tools.eval_download) on generated data, served from a
local HTTP server on 127.0.0.1 (never the internet): what a person sees in the table, the JSON record, the
sentences for bad input, and a download that produces a set `make eval` then runs on."""
from __future__ import annotations

import functools
import http.server
import json
import socket
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

import bench.eval as bench_eval
from tools import eval_download
from tools.sample_data import COLOURS

SPANISH = {"red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "purple": "morado",
           "orange": "naranja", "black": "negro", "white": "blanco"}
SHAPES = {"circle": "un círculo", "square": "un cuadrado"}


def jpeg(path: Path, colour: str, shape: str | None = None, background: str | None = None) -> None:
    """A solid picture of `colour`, or a `colour` shape on a `background`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", (96, 72), COLOURS[background or colour])
    if shape == "circle":
        ImageDraw.Draw(picture).ellipse((20, 10, 76, 62), fill=COLOURS[colour])
    elif shape == "square":
        ImageDraw.Draw(picture).rectangle((20, 10, 76, 62), fill=COLOURS[colour])
    picture.save(path, "JPEG", quality=90)


def table_rows(text: str) -> dict[str, list[str]]:
    """The printed table's rows by their first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("language"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def caption_set(tmp_path) -> Path:
    """10 pictures (a colour shape on another colour), a caption of each in English and in Spanish, and
    three bad lines: not JSON, a key missing, an image that is not in the folder."""
    folder = tmp_path / "colours"
    names = list(COLOURS)
    lines = []
    for index in range(10):
        colour, background = names[index % 8], names[(index + 3) % 8]
        shape = list(SHAPES)[index // 8]
        jpeg(folder / "images" / f"p{index:02d}.jpg", colour, shape, background)
        lines.append({"image": f"images/p{index:02d}.jpg", "lang": "en",
                      "caption": f"a {colour} {shape} on a {background} background"})
        lines.append({"image": f"images/p{index:02d}.jpg", "lang": "es",
                      "caption": f"{SHAPES[shape]} {SPANISH[colour]} sobre fondo {SPANISH[background]}"})
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    text += '\n{"image": "images/p00.jpg", "lang": "en"\n'  # not JSON
    text += '{"image": "images/p01.jpg", "caption": "no language"}\n'  # a key missing
    text += '{"image": "images/elsewhere.jpg", "lang": "es", "caption": "una foto"}\n'  # not in the folder
    (folder / "captions.jsonl").write_text(text, encoding="utf-8")
    return folder


def test_eval_prints_a_row_per_language_and_writes_the_record(caption_set, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "result.json"
    code = bench_eval.main([str(caption_set), "--model", str(tiny_model_dir), "--device", "cpu", "--batch", "4",
                            "--output", str(output)])
    seen = capsys.readouterr()
    assert code == 0, seen.err
    assert "Traceback" not in seen.err
    rows = table_rows(seen.out)
    assert set(rows) == {"en", "es", "all"}
    for name, cells in rows.items():
        captions, r1, r5, r10, mean = cells
        assert int(captions) == (20 if name == "all" else 10)
        assert r10 == "100.0"  # 10 images: the right one is always among the first 10
        assert 0.0 <= float(r1) <= float(r5) <= 100.0
        assert abs(float(mean) - (float(r1) + float(r5) + 100.0) / 3) < 0.06
    # The bad lines: counted and named in one sentence, never a traceback.
    assert ("3 lines of captions.jsonl skipped: 1 not JSON (first at line 21), 1 without a string image, lang "
            "and caption (first at line 22), 1 naming an image that is not in images/ (first at line 23).") in seen.out
    assert "RANDOM WEIGHTS" in seen.out

    record = json.loads(output.read_text())
    assert record["model"] == str(tiny_model_dir)
    assert record["text_model"] in (None, str(tiny_model_dir))  # a CLIP's own text tower
    assert record["random_weights"] is True
    assert (record["images"], record["captions"]) == (10, 20)
    assert sum(record["skipped_lines"].values()) == 3
    assert set(record["languages"]) == {"en", "es"}
    for figures in [*record["languages"].values(), record["all"]]:
        assert figures["r@10"] == 100.0 and 0.0 <= figures["r@1"] <= 100.0
    printed = {name: float(cells[1]) for name, cells in rows.items()}
    assert printed["es"] == round(record["languages"]["es"]["r@1"], 1)
    assert record["chance"]["r@1"] == 10.0 and record["seconds"]["total"] > 0


class ColourTowers:
    """A stand-in model whose recall is known exactly: a picture's vector is the one-hot of its nearest
    named colour, a caption's the one-hot of the first colour word in it (English or Spanish)."""

    names = list(COLOURS)
    words = {**{name: name for name in COLOURS}, **{spanish: name for name, spanish in SPANISH.items()}}

    def _one_hot(self, name: str) -> np.ndarray:
        vector = np.zeros(len(self.names), dtype=np.float32)
        vector[self.names.index(name)] = 1.0
        return vector

    def prepare_images(self, pictures):
        return np.stack([np.asarray(picture, dtype=np.float32).reshape(-1, 3).mean(axis=0) for picture in pictures])

    def embed_images(self, batches):
        palette = np.array([COLOURS[name] for name in self.names], dtype=np.float32)
        means = np.concatenate(batches)
        nearest = np.linalg.norm(means[:, None, :] - palette[None], axis=2).argmin(axis=1)
        return [self._one_hot(self.names[i]) for i in nearest]

    def embed_texts(self, texts):
        return [SimpleNamespace(vector=self._one_hot(next(self.words[w] for w in text.split() if w in self.words)),
                                truncated=False) for text in texts]

    def info(self):
        return {"name": "colour-oracle", "dim": len(self.names), "random_weights": False}


def test_recall_is_exact_on_a_model_that_is_right_or_wrong_by_construction(tmp_path, monkeypatch, capsys):
    """8 solid colours; every English caption names its colour, 2 of 8 Spanish ones name another. A wrong
    caption's own image scores 0 like 6 others (ties count against it): rank 8, found at 10 only."""
    folder = tmp_path / "solid"
    names = list(COLOURS)
    lines = []
    for index, colour in enumerate(names):
        jpeg(folder / "images" / f"{colour}.jpg", colour)
        said = names[(index + 1) % 8] if index < 2 else colour
        lines += [{"image": f"images/{colour}.jpg", "lang": "en", "caption": f"a {colour} picture"},
                  {"image": f"images/{colour}.jpg", "lang": "es", "caption": f"una foto {SPANISH[said]}"}]
    # A file named .jpg that is no picture: left out with its caption, and said.
    (folder / "images" / "broken.jpg").write_bytes(b"not a picture")
    lines.append({"image": "images/broken.jpg", "lang": "en", "caption": "a red picture"})
    (folder / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.setattr(bench_eval, "load_towers", lambda *args, **kwargs: ColourTowers())

    assert bench_eval.main([str(folder), "--batch", "3", "--output", str(tmp_path / "exact.json")]) == 0
    out = capsys.readouterr().out
    assert "1 image did not decode and was left out with their captions: broken.jpg: is not an image" in out
    rows = table_rows(out)
    assert rows["en"] == ["8", "100.0", "100.0", "100.0", "100.0"]
    assert rows["es"] == ["8", "75.0", "75.0", "100.0", "83.3"]
    assert rows["all"] == ["16", "87.5", "87.5", "100.0", "91.7"]
    record = json.loads((tmp_path / "exact.json").read_text())
    assert record["languages"]["es"] == {"captions": 8, "r@1": 75.0, "r@5": 75.0, "r@10": 100.0, "mean": 83.33,
                                         "truncated": 0}
    assert record["random_weights"] is False
    assert (record["images"], record["images_in_folder"], len(record["undecodable_images"])) == (8, 9, 1)


@pytest.mark.parametrize("layout", ["missing", "empty", "no captions file", "only bad lines"])
def test_eval_without_usable_data_says_so_in_one_sentence(layout, tmp_path, capsys):
    folder = tmp_path / "set"
    if layout != "missing":
        (folder / "images").mkdir(parents=True)
    if layout in ("no captions file", "only bad lines"):
        jpeg(folder / "images" / "a.jpg", "red")
    if layout == "only bad lines":
        (folder / "captions.jsonl").write_text("not json\n")
    code = bench_eval.main([str(folder), "--model", "never-loaded"])
    seen = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in seen.err
    assert len(seen.err.strip().splitlines()) == 1 and seen.err.strip().endswith(".")


def test_a_model_that_does_not_load_gives_one_sentence(caption_set, tmp_path, capsys):
    code = bench_eval.main([str(caption_set), "--model", str(tmp_path / "no-such-model")])
    seen = capsys.readouterr()
    assert code == 1 and "Traceback" not in seen.err
    assert seen.err.strip().startswith(f"The model {tmp_path / 'no-such-model'} could not be loaded (")
    assert len(seen.err.strip().splitlines()) == 1


# -- the downloads ---------------------------------------------------------------------------------


class Site:
    """A folder served on 127.0.0.1, remembering every path asked for."""

    def __init__(self, folder: Path):
        self.paths: list[str] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                site.paths.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site(request, tmp_path):
    def start(folder: Path) -> Site:
        served = Site(folder)
        request.addfinalizer(served.close)
        return served
    return start


XTD10_IMAGES = ["COCO_train2014_000000061844.jpg", "COCO_train2014_000000061849.jpg", "COCO_val2014_000000127068.jpg"]


def fake_xtd10(root: Path) -> Path:
    """The repository's files for two languages, and the COCO server's split folders."""
    (root / "XTD10").mkdir(parents=True)
    (root / "MIC").mkdir()
    (root / "XTD10" / "test_image_names.txt").write_text("".join(f"{name}\n" for name in XTD10_IMAGES))
    colours = ["red", "green", "blue"]
    (root / "MIC" / "test_1kcaptions_en.txt").write_text("".join(f"a {c} picture\n" for c in colours))
    (root / "XTD10" / "test_1kcaptions_es.txt").write_text("".join(f"una foto {SPANISH[c]}\n" for c in colours),
                                                           encoding="utf-8")
    for name, colour in zip(XTD10_IMAGES, colours):
        jpeg(root / name.split("_")[1] / name, colour)
    return root


def test_xtd10_download_writes_a_set_that_eval_runs_on(tmp_path, site, tiny_model_dir, capsys):
    server = site(fake_xtd10(tmp_path / "server"))
    dest = tmp_path / "xtd10"
    argv = ["xtd10", "--dest", str(dest), "--languages", "es,en", "--captions-url", server.url,
            "--images-url", server.url]
    assert eval_download.main(argv) == 0
    seen = capsys.readouterr()
    assert "Wrote 3 images and 6 captions in 2 languages" in seen.out
    assert sorted(p.name for p in (dest / "images").iterdir()) == sorted(XTD10_IMAGES)  # no .part left
    rows = [json.loads(line) for line in (dest / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(row["image"], row["lang"]) for row in rows} == {(f"images/{n}", lang) for n in XTD10_IMAGES
                                                             for lang in ("es", "en")}
    assert {"image": f"images/{XTD10_IMAGES[2]}", "lang": "es", "caption": "una foto azul"} in rows
    assert "/val2014/COCO_val2014_000000127068.jpg" in server.paths  # each image from its own split

    # Again: every file is there, so nothing is fetched twice.
    asked = len(server.paths)
    assert eval_download.main(argv) == 0
    assert len(server.paths) == asked

    code = bench_eval.main([str(dest), "--model", str(tiny_model_dir), "--device", "cpu",
                            "--output", str(tmp_path / "xtd10.json")])
    seen = capsys.readouterr()
    assert code == 0, seen.err
    assert set(table_rows(seen.out)) == {"es", "en", "all"}


def test_crossmodal3600_download_extracts_the_wanted_images(tmp_path, site, capsys):
    root = tmp_path / "server"
    root.mkdir()
    keys = ["0a1b2c3d", "1b2c3d4e", "2c3d4e5f"]
    rows = [{"image/key": key, "image/locale": "es", "en": {"caption": [f"a photo {i}", f"another photo {i}"]},
             "es": {"caption": [f"una foto {i}"]}, "de": {"caption": [f"ein Foto {i}"]}} for i, key in enumerate(keys)]
    with zipfile.ZipFile(root / "captions.zip", "w") as archive:
        archive.writestr("captions.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    with tarfile.open(root / "images.tgz", "w:gz") as archive:
        for key, colour in zip(keys, ["red", "green", "blue"]):
            jpeg(tmp_path / "pictures" / f"{key}.jpg", colour)
            archive.add(tmp_path / "pictures" / f"{key}.jpg", arcname=f"images/{key}.jpg")
    server = site(root)
    dest = tmp_path / "xm3600"
    code = eval_download.main(["crossmodal3600", "--dest", str(dest), "--languages", "es,en", "--limit", "2",
                               "--captions-url", f"{server.url}/captions.zip",
                               "--images-url", f"{server.url}/images.tgz"])
    seen = capsys.readouterr()
    assert code == 0, seen.err
    assert sorted(p.name for p in (dest / "images").iterdir()) == [f"{keys[0]}.jpg", f"{keys[1]}.jpg"]
    lines = [json.loads(line) for line in (dest / "captions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {line["lang"] for line in lines} == {"es", "en"}
    assert not (dest / ".source" / "images.tgz").exists()  # deleted once extracted


def test_an_unreachable_server_gives_one_sentence_and_a_failure(tmp_path, capsys):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code = eval_download.main(["xtd10", "--dest", str(tmp_path / "x"), "--captions-url", closed,
                               "--images-url", closed])
    seen = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in seen.err
    last = seen.err.strip().splitlines()[-1]
    assert closed in last and "test_image_names.txt" in last and last.endswith(".")


def test_an_unknown_language_is_refused_before_any_download(tmp_path, capsys):
    assert eval_download.main(["xtd10", "--dest", str(tmp_path / "x"), "--languages", "es,xx"]) == 2
    assert "This set has no captions in xx" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
