"""Unit tests of services/photostore/terms.py: stored photos' terms reach SQL as bound parameters only,
and the check query's answer becomes a 404 (no such photo) or a 422 (terms that cancel out)."""
from __future__ import annotations

import pytest

from services.common.errors import BadRequest, NotFound
from services.photostore import sql, terms
from services.photostore.dialects import dialect_for


class _Connection:
    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def read_rows(self, action, sql_text, params):
        self.asked.append((sql_text, params))
        return [self.answer]


class _Store:
    def __init__(self, answer, has_vector_indices=False):
        self.dialect = dialect_for(has_vector_indices)
        self.database, self.table = "default", "photos"
        self.connection = _Connection(answer)


def _search(store):
    text, params = sql.search_sql(store.dialect, store.database, store.table)
    return text, {**params, "q": [0.1, 0.2]}


@pytest.mark.parametrize("indices", [False, True])
def test_stored_terms_are_bound_parameters_and_the_distance_is_to_their_sum(indices):
    store = _Store(([512, 512], 0.9), indices)
    text, params = terms.stored(store, *_search(store), [("a'; DROP TABLE x --", 1.5), ("b", -0.5)])
    assert "DROP TABLE" not in text and "DROP TABLE" in params["s0_id"]
    assert (params["s0_w"], params["s1_w"], params["q"]) == (1.5, -0.5, [0.1, 0.2])
    assert text.startswith("WITH") and store.dialect.distance_to("photo_embed", "qv") in text
    assert store.dialect.distance("photo_embed", "q") not in text
    assert len(store.connection.asked) == 1


def test_without_stored_terms_the_search_is_unchanged():
    store = _Store(None)
    assert terms.stored(store, *_search(store), []) == _search(store)
    assert store.connection.asked == []


def test_a_missing_photo_is_404_and_terms_that_cancel_are_422():
    with pytest.raises(NotFound, match="'gone'"):
        terms.stored(_Store(([512, 0], 1.0)), *_search(_Store(None)), [("here", 1.0), ("gone", 1.0)])
    with pytest.raises(BadRequest, match="cancel each other out"):
        terms.stored(_Store(([512, 512], 0.0)), *_search(_Store(None)), [("a", 1.0), ("a", -1.0)])
