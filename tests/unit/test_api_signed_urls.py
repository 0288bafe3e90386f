"""Unit tests of signed image URLs: with API_REQUIRE_KEY_FOR_READS the page's <img> cannot send a key, so
results carry thumbnail and original URLs signed with the gateway's secret, which load without one until
they expire; a changed or expired URL is refused with 403 and a sentence. Open reads keep plain paths."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.unit.api_support import KEY, GatewayFakes, error_of, gateway_client, image_vector
from ui.formatting import result_image

READ = {"X-API-Key": KEY}


@pytest.fixture
def fakes(tmp_path) -> GatewayFakes:
    fakes = GatewayFakes()
    fakes.store.thumbnails["red"] = b"\xff\xd8 thumbnail of red"
    # A photo read from a folder: the gateway serves its original.
    (tmp_path / "Pictures").mkdir()
    path = tmp_path / "Pictures" / "tree.jpg"
    Image.new("RGB", (8, 8), "green").save(path)
    fakes.store.add("tree", image_vector(b"tree"), photo_image_url=f"file://{path}")
    fakes.store.files[str(path)] = ("tree", path.stat().st_size, path.stat().st_mtime)
    return fakes


@pytest.fixture
def client(fakes, tmp_path):
    with gateway_client(fakes, require_key_for_reads=True, library_roots=str(tmp_path / "Pictures")) as test_client:
        yield test_client


def _results(client, text: str = "red") -> dict[str, dict]:
    response = client.post("/v1/search", json={"text": text, "top_k": 10}, headers=READ)
    assert response.status_code == 200, response.text
    return {result["photo_id"]: result for result in response.json()["results"]}


def test_results_carry_signed_urls_that_load_without_a_key(client):
    results = _results(client)
    thumbnail = results["red"]["thumbnail_url"]
    assert thumbnail.startswith("/v1/photos/red/thumbnail?") and "signature=" in thumbnail
    loaded = client.get(thumbnail)
    assert loaded.status_code == 200 and loaded.content == b"\xff\xd8 thumbnail of red"
    original = results["tree"]["photo_image_url"]
    assert original.startswith("/v1/photos/tree/original?")
    assert client.get(original).status_code == 200
    # A photo with a web address keeps it: only the gateway's own paths are signed.
    assert results["green"]["photo_image_url"] == "http://img.test/green.jpg"
    # So do the photo routes' answers.
    photo = client.get("/v1/photos/red", headers=READ).json()
    assert client.get(photo["thumbnail_url"]).status_code == 200
    # The page puts the gateway's address in front and keeps the signature.
    assert result_image(results["red"], "http://gateway:8000") == "http://gateway:8000" + thumbnail


def test_an_id_that_needs_quoting_is_signed_as_requested(client, fakes):
    fakes.store.add("a b", image_vector(b"a b"))
    fakes.store.thumbnails["a b"] = b"\xff\xd8 a b"
    thumbnail = client.get("/v1/photos/a b", headers=READ).json()["thumbnail_url"]
    assert thumbnail.startswith("/v1/photos/a%20b/thumbnail?")
    assert client.get(thumbnail).content == b"\xff\xd8 a b"


def test_the_same_url_is_given_for_a_while_so_browsers_cache_it(client):
    assert _results(client)["red"]["thumbnail_url"] == _results(client)["red"]["thumbnail_url"]


def test_without_a_signature_or_key_a_read_still_needs_the_key(client):
    assert client.get("/v1/photos/red/thumbnail").status_code == 401
    assert client.get("/v1/photos/red/thumbnail", headers=READ).status_code == 200


def test_a_changed_url_is_403_with_a_sentence(client):
    thumbnail = _results(client)["red"]["thumbnail_url"]
    query = parse_qs(urlsplit(thumbnail).query)
    expires, signature = query["expires"][0], query["signature"][0]
    tampered = [
        f"/v1/photos/red/thumbnail?expires={expires}&signature={signature[:-2]}xx",
        f"/v1/photos/red/thumbnail?expires={int(expires) + 3600}&signature={signature}",
        f"/v1/photos/green/thumbnail?expires={expires}&signature={signature}",  # another photo's
        f"/v1/photos/red/original?expires={expires}&signature={signature}",  # another kind of file
        f"/v1/photos/red/thumbnail?expires=soon&signature={signature}",
        f"/v1/photos/red/thumbnail?signature={signature}",
    ]
    for url in tampered:
        response = client.get(url)
        assert response.status_code == 403, url
        error = error_of(response)
        assert error["code"] == "invalid_signature" and "X-API-Key" in error["message"], url


def test_an_expired_url_is_403_and_says_so(client):
    signer = client.app.state.url_signer
    old = signer.sign("/v1/photos/red/thumbnail", now=time.time() - 3 * signer.ttl_s)
    response = client.get(old)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "link_expired" and "search again" in error["message"]


def test_gateways_sharing_api_keys_accept_each_others_urls(fakes, tmp_path):
    # Without API_URL_SIGNING_KEY the secret comes from API_KEYS, which every gateway of a deployment
    # shares, so a page may load a thumbnail through any of them.
    with gateway_client(fakes, require_key_for_reads=True) as first:
        thumbnail = _results(first)["red"]["thumbnail_url"]
    with gateway_client(fakes, require_key_for_reads=True) as second:
        assert second.get(thumbnail).status_code == 200
    with gateway_client(fakes, require_key_for_reads=True, api_keys=f"{KEY},another") as rotated:
        assert rotated.get(thumbnail).status_code == 403
    with gateway_client(fakes, require_key_for_reads=True, url_signing_key="x" * 32) as own:
        assert own.get(thumbnail).status_code == 403
        signed = _results(own)["red"]["thumbnail_url"]
    with gateway_client(fakes, require_key_for_reads=True, url_signing_key="x" * 32,
                        api_keys="a-new-key") as same_secret:
        assert same_secret.get(signed).status_code == 200


def test_open_reads_keep_plain_paths(fakes, tmp_path):
    with gateway_client(fakes, library_roots=str(tmp_path / "Pictures")) as client:
        results = _results(client)
        assert results["red"]["thumbnail_url"] == "/v1/photos/red/thumbnail"
        assert results["tree"]["photo_image_url"] == "/v1/photos/tree/original"
        assert client.get("/v1/photos/red/thumbnail").status_code == 200
        # A signature is not needed here, so an old one (from when reads needed a key) is not checked.
        assert client.get("/v1/photos/red/thumbnail?expires=1&signature=old").status_code == 200


def test_a_short_signing_key_is_refused_at_start():
    from pydantic import ValidationError

    from tests.unit.api_support import make_settings

    with pytest.raises(ValidationError, match="API_URL_SIGNING_KEY"):
        make_settings(url_signing_key="short")
