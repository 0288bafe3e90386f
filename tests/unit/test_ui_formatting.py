"""Unit tests of what the search page writes (ui/formatting.py): captions, the stats line, the chosen
photo's details and image tag."""
from __future__ import annotations

from tests.unit.ui_support import result
from ui.formatting import (
    caption_for,
    gallery_items,
    languages_text,
    model_line,
    photo_details,
    photo_html,
    stats_markdown,
)


def test_caption_prefers_description_then_ai_description_then_id():
    assert caption_for(result(0, photo_description="A  dog\n on sand")) == "0.500 · A dog on sand"
    assert caption_for(result(1, ai_description="a cat")) == "0.490 · a cat"
    assert caption_for(result(2)) == "0.480 · p2"
    long = caption_for(result(3, photo_description="word " * 50))
    assert len(long) < 110 and long.endswith("…")


def test_gallery_items_pair_urls_with_captions_and_skip_rows_without_url():
    items = gallery_items([result(0), {"photo_id": "x", "score": 0.1}])
    assert items == [("http://img.test/p0.jpg", "0.500 · p0")]


CLIP = {"name": "openai/clip-vit-base-patch32", "dim": 512, "device": "cpu", "dtype": "float32"}
MULTILINGUAL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
FIFTY = ["ar", "bg", "ca", "cs", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "gl", "gu", "he", "hi",
         "hr", "hu", "hy", "id", "it", "ja", "ka", "ko", "ku", "lt", "lv", "mk", "mn", "mr", "ms", "my", "nb",
         "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sq", "sr", "sv", "th", "tr", "uk", "ur", "vi", "zh"]


def test_stats_line_names_count_and_model():
    line = stats_markdown({"photos": 25000, "model": {"name": "openai/clip", "dim": 512}, "random_weights": True})
    assert "25,000" in line and "openai/clip" in line and "512-d" in line and "random weights" in line
    assert "not available" in stats_markdown(None)
    assert "Model unknown" in stats_markdown({"photos": 3, "model": None})


def test_model_line_names_both_towers_when_a_separate_one_embeds_texts():
    model = CLIP | {"text_model": MULTILINGUAL, "text_family": "st-multilingual", "languages": FIFTY}
    assert model_line(model) == f"Images: openai/clip-vit-base-patch32 · Texts: {MULTILINGUAL} (50+ languages)"
    assert model_line(model | {"languages": None}) == f"Images: openai/clip-vit-base-patch32 · Texts: {MULTILINGUAL}"
    # In the stats line, Markdown-safe: a `_` in a name stays a `_`, not emphasis.
    line = stats_markdown({"photos": 3, "model": model | {"text_model": "my_text_tower"}})
    assert "Texts: my\\_text\\_tower (50+ languages) · 512-d vectors" in line


def test_model_line_names_one_model_that_embeds_both_and_its_language():
    assert model_line(CLIP | {"text_model": CLIP["name"], "languages": ["en"]}) == \
        "Model: openai/clip-vit-base-patch32 (English)"
    assert model_line(CLIP | {"languages": ["en", "es", "en"]}) == "Model: openai/clip-vit-base-patch32 (2 languages)"
    assert model_line(CLIP | {"languages": ["ja"]}) == "Model: openai/clip-vit-base-patch32 (language: ja)"


def test_model_line_of_an_older_embedder_says_no_languages_it_was_not_told():
    assert model_line(CLIP) == "Model: openai/clip-vit-base-patch32"
    assert model_line(CLIP | {"text_model": None, "languages": None}) == "Model: openai/clip-vit-base-patch32"
    assert model_line(CLIP | {"languages": []}) == "Model: openai/clip-vit-base-patch32"
    assert languages_text("en") is None  # not a list: unknown, not one language per letter


def test_model_line_without_a_model_says_the_embedder_did_not_answer():
    for model in (None, {}, {"dim": 512}, "openai/clip"):
        assert model_line(model) == "Model unknown (the embedder did not answer)"
    line = stats_markdown({"photos": 3, "model": None, "random_weights": False})
    assert line == "**3** photos indexed · Model unknown (the embedder did not answer)"


def test_photo_html_escapes_what_the_gateway_sends():
    tag = photo_html({"photo_image_url": 'http://x.test/a.jpg"onerror="alert(1)', "photo_description": "<b>"})
    assert '"onerror' not in tag and "&quot;onerror" in tag and "&lt;b&gt;" in tag
    assert "<img" not in photo_html({"photo_image_url": "javascript:alert(1)"})


def test_chosen_photo_links_to_its_page_and_names_unsplash_only_for_unsplash():
    unsplash = {"photo_id": "a1", "photo_image_url": "https://images.unsplash.com/a1",
                "photo_url": "https://unsplash.com/photos/a1", "photo_description": "A red door"}
    local = unsplash | {"photo_url": "http://127.0.0.1:8090/images/a1.jpg"}
    assert "[open on Unsplash](https://unsplash.com/photos/a1)" in photo_details(unsplash)
    details = photo_details(local)
    assert "[open on its page](http://127.0.0.1:8090/images/a1.jpg)" in details and "Unsplash" not in details


def test_chosen_photo_says_where_it_was_taken():
    details = photo_details(result(1, photo_location_name="Kyoto, Japan", photo_location_country="Japan"))
    assert "in Kyoto, Japan" in details
    assert "in Norway" in photo_details(result(1, photo_location_country="Norway"))


def test_a_video_result_is_marked_with_its_frame_time_and_length():
    from ui.formatting import caption_for, photo_details

    video = {"photo_id": "v", "kind": "video", "frame_s": 63.4, "duration_s": 125.0, "score": 0.5,
             "photo_description": "harbour"}
    assert caption_for(video) == "0.500 · ▶ 1:03 / 2:05 · harbour"
    assert "video, shown at 1:03 of 2:05" in photo_details(video)
    assert caption_for({**video, "kind": "photo"}) == "0.500 · harbour"
