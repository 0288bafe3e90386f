"""`make search` (tools/search.py) against the gateway with fake adapters on a real port: the terms it
sends, the table it prints, and its sentences when a query is refused or the gateway is away."""
from __future__ import annotations

import pytest

from tests.support import free_port
from tests.unit.api_support import GatewayFakes, text_vector
from tools import search


@pytest.fixture
def fakes() -> GatewayFakes:
    fakes = GatewayFakes()
    fakes.store.add("beach-1", text_vector("a beach"), photo_url="https://unsplash.test/photos/beach-1",
                    photographer_first_name="Ana", photographer_last_name="Lopez")
    return fakes


def test_prints_a_table_with_score_photographer_and_link(served_gateway, capsys):
    assert search.main(["a beach", "--top-k", "3", "--api-url", served_gateway]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "score", "relevance", "photo", "photographer", "link"]
    assert lines[1].split() == ["1", "1.000", "-", "beach-1", "Ana", "Lopez", "https://unsplash.test/photos/beach-1"]
    assert len(lines) == 1 + 3 + 2 and lines[4].startswith("3 results in") and "random weights" in lines[5]


def test_terms_from_the_options(served_gateway, fakes, tmp_path, capsys):
    image = tmp_path / "query.jpg"
    image.write_bytes(b"dog")
    code = search.main(["--plus", "a beach", "--minus", "people", "--like", "red", "--unlike", "cat",
                        "--image", str(image), "--api-url", served_gateway])
    assert code == 0, capsys.readouterr().err
    assert fakes.store.stored_terms == [("red", 1.0), ("cat", -1.0)]
    assert sorted(fakes.embedder.calls) == [("images", 1), ("texts", 2)]  # one call per kind


def test_refusals_and_an_absent_gateway_are_sentences(served_gateway, capsys):
    assert search.main(["--like", "no-such-photo", "--api-url", served_gateway]) == 1
    assert "No photo with photo_id 'no-such-photo'" in capsys.readouterr().err
    assert search.main(["--api-url", served_gateway]) == 1
    assert "say what to search for" in capsys.readouterr().err
    assert search.main(["--image", "/nonexistent/x.jpg", "--api-url", served_gateway]) == 1
    assert "cannot read the image /nonexistent/x.jpg" in capsys.readouterr().err
    assert search.main(["sky", "--api-url", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "Could not reach the gateway" in capsys.readouterr().err


def test_a_hybrid_search_shows_the_words_each_photo_matched(served_gateway, fakes, capsys):
    fakes.store.add("beach-2", text_vector("sand"), photo_description="a sunny beach with palm trees")
    code = search.main(["sunny beach", "--mode", "hybrid", "--fusion", "alpha", "--alpha", "0.3",
                        "--api-url", served_gateway])
    assert code == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "score", "relevance", "photo", "words", "photographer", "link"]
    assert lines[1].split()[3:5] == ["beach-2", "sunny,beach"]
    assert "hybrid search" in lines[-2]
    assert search.main(["beach", "--min-relevance", "1.5", "--api-url", served_gateway]) == 1
    assert "min_relevance must be between 0 and 1" in capsys.readouterr().err
