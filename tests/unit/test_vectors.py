"""The query maths: normalising and combining text and image vectors."""
import numpy as np
import pytest

from services.common.vectors import combine, normalize


def test_normalize_gives_unit_rows_and_keeps_zero_rows():
    rows = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.dtype == np.float32
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_combine_at_half_is_the_seeds_mean_of_unit_vectors():
    rng = np.random.default_rng(0)
    text, image = rng.normal(size=512), rng.normal(size=512)
    t, i = text / np.linalg.norm(text), image / np.linalg.norm(image)
    expected = (t + i) / 2
    expected /= np.linalg.norm(expected)
    assert np.allclose(combine(text, image, 0.5), expected, atol=1e-6)


def test_combine_weight_ends_are_one_side_only():
    rng = np.random.default_rng(1)
    text, image = rng.normal(size=8), rng.normal(size=8)
    assert np.allclose(combine(text, image, 1.0), normalize(image), atol=1e-6)
    assert np.allclose(combine(text, image, 0.0), normalize(text), atol=1e-6)
    assert np.allclose(combine(text, None), normalize(text))
    assert np.allclose(combine(None, image), normalize(image))


def test_combine_refuses_nothing_and_bad_weights():
    with pytest.raises(ValueError, match="text vector, an image vector"):
        combine(None, None)
    with pytest.raises(ValueError, match="between 0 and 1"):
        combine(np.ones(4), np.ones(4), 1.5)
