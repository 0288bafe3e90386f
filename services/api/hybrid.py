"""Query modes: words matched in the photos' text (lexical), the query vector (vector), or both fused (hybrid).

A vector finds what a photo looks like, but not a file name, a place's name or a rare word, which the
photos' own text (descriptions, names, file names; BM25 in `services/photostore/lexical.py`) finds. So
`POST /v1/search` takes a `mode`:

- `vector`: as before, one store search by cosine similarity.
- `lexical`: the photos whose text matches the words, best BM25 first; the query vector goes along, so
  each result still has its cosine `score` (and `relevance`).
- `hybrid`: both searches at once, each `max(50, offset + top_k)` deep, fused: by reciprocal rank
  fusion (`rrf`, the default: each list adds 1 / (rrf_k + rank); ties go to the better vector rank),
  or by `alpha` (alpha * the vector score + (1 - alpha) * the BM25 score, each min-max normalised over
  its own list; a photo missing from a list gets 0 there). `-word` and `-"a phrase"` drop photos from
  both lists. Pages are slices of the fused list.

Each result of lexical and hybrid carries `match`: its rank and score in each list (null where the
list lacked it), the fused score and the words it matched. A query with no words to match (only
punctuation or stop-words, or no text at all) runs as a vector search and says so in `notices`.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from services.api.deps import Services, blocking
from services.common.vectors import normalize
from services.photostore.results import MAX_RESULTS

if TYPE_CHECKING:
    from services.api.query import SearchQuery

MODES = ("vector", "lexical", "hybrid")
FUSIONS = ("rrf", "alpha")
DEPTH = 50  # each list of a fused search is at least this deep, so the first pages agree
EMBED_TEXT_CHARS = 2000  # the embedder gets at most this much of a text (its towers read 64-512 tokens)
LEXICAL_MAX_CHARS = 1000  # and the word matcher this much
_EXCLUDED = re.compile(r'(?<!\S)-(?:"[^"]*"?|\S+)')


def _lexical():
    """The store library's word search, imported when first needed (a vector-only gateway never loads it)."""
    from services.photostore import lexical

    return lexical


@dataclass
class Plan:
    """What a query turned out to be: the mode used, its parsed words, and what to tell the user."""

    mode: str = "vector"
    lexical: Any = None  # a LexicalQuery for lexical and hybrid
    notices: list[str] = field(default_factory=list)
    truncated: bool = False
    words: asyncio.Future | None = None  # the word search, started while the query is embedded

    def answer(self) -> dict[str, Any]:
        return {"mode": self.mode, "notices": list(self.notices), "query_truncated": self.truncated}

    def start(self, services: Services, query: SearchQuery) -> None:
        """Start the word search now, while the query is embedded, when it needs no vector: without a
        score cut-off (min_score, min_relevance) its rows' cosines only need to be shown, and are computed
        from their stored vectors, read while the vector search runs. With a cut-off every matching row's
        cosine decides which rows stay, so the search waits for the vector and computes them in SQL."""
        if self.lexical is not None and query.min_score is None and query.min_relevance is None:
            self.words = asyncio.ensure_future(blocking(_word_search(services), self.lexical, vector=None,
                                                        top_k=_depth(query), offset=0, filters=query.filters))

    def settle(self) -> None:
        """Cancel the word search if the query failed before it was needed; never leave its error unretrieved."""
        if self.words is None:
            return
        if not self.words.done():
            self.words.cancel()
        elif not self.words.cancelled():
            self.words.exception()


def lexical_text(query: SearchQuery) -> str:
    """The words a lexical or hybrid query matches: its text and its text terms' (those not weighted
    negatively, which mean "less like this"), joined."""
    texts = [query.text] if query.text else []
    texts += [str(term.value) for term in query.terms if term.kind == "text" and term.weight > 0]
    return " ".join(text for text in texts if text and text.strip())


def plan(query: SearchQuery) -> Plan:
    """Decide the mode a query runs in and cut its texts to what the matcher and the embedder take. The
    query's text is changed in place: what the embedder sees (without `-word` exclusions in lexical and
    hybrid, which would otherwise pull the vector towards what the user excluded)."""
    decided = Plan(mode=query.mode or "vector")
    if decided.mode != "vector":
        words = lexical_text(query)
        if not words:
            decided.notices.append(f"A {decided.mode} search matches words, and this query has no text: it ran as "
                                   "a vector search.")
            decided.mode = "vector"
        else:
            parsed = _lexical().parse_query(words, max_chars=LEXICAL_MAX_CHARS)
            if parsed.truncated:
                decided.truncated = True
                decided.notices.append(f"The text is long: only its first {LEXICAL_MAX_CHARS:,} characters were "
                                       "matched as words.")
            if parsed.empty:
                decided.notices.append("The text has no words to match (only punctuation, excluded words or common "
                                       "words such as \"the\"): it ran as a vector search.")
                decided.mode = "vector"
            else:
                decided.lexical = parsed
                if query.text and parsed.excluded:
                    query.text = _EXCLUDED.sub(" ", query.text).strip() or query.text
    if query.text and len(query.text) > EMBED_TEXT_CHARS:
        query.text = query.text[:EMBED_TEXT_CHARS]
        decided.truncated = True
        decided.notices.append(f"The text is long: only its first {EMBED_TEXT_CHARS:,} characters were embedded "
                               "(the model itself reads fewer).")
    return decided


async def full_vector(services: Services, vector: np.ndarray, stored: Sequence[tuple[str, float]],
                      decided: Plan) -> np.ndarray | None:
    """The query vector with the stored photos' terms added, as the store adds them in SQL: what the
    cosines of lexical rows and the relevance are computed against. A vector search leaves the sum to the
    store and reads no stored vector: None then (its results have no relevance)."""
    if not stored:
        return vector
    if decided.mode == "vector":
        return None
    total = np.asarray(vector, dtype=np.float32).copy()
    for photo_id, weight in stored:
        photo = await blocking(services.store.get_photo, photo_id, with_vector=True)
        if photo is not None and photo.get("vector") is not None:
            stored_vector = normalize(np.asarray(photo["vector"], dtype=np.float32))
            total = stored_vector * weight if total.size == 0 else total + stored_vector * weight
    return normalize(total) if total.size else total


def answer_key(services: Services, vector: np.ndarray, query: SearchQuery, decided: Plan,
               stored: Sequence[tuple[str, float]]) -> tuple:
    """The result cache's key of a lexical or hybrid answer: a vector search's, plus everything the words
    and the fusion add, so that no two modes, fusions or word lists ever share an answer."""
    from services.api.resultcache import answer_key as vector_key

    words = decided.lexical
    return (*vector_key(vector, filters=query.filters, min_score=query.min_score, collapse=query.collapse,
                        stored_terms=stored, table=getattr(services.store, "table", "")),
            decided.mode, query.fusion, query.rrf_k, query.alpha, words.words, words.phrases, words.excluded)


async def search(services: Services, vector: np.ndarray, full: np.ndarray, query: SearchQuery, decided: Plan,
                 stored: Sequence[tuple[str, float]], version_read: asyncio.Future | None = None,
                 ) -> tuple[list[dict[str, Any]], bool]:
    """The page of a lexical or hybrid query, ranked from the first page, each row with its `match`, and
    whether it came from the result cache. `vector` is what the store searches by (stored terms are added
    there), `full` the whole query vector. The cache keeps the whole fused list, so "Load more" is a slice
    of it, as for a vector search, while the table's data version is the same."""
    cache = services.result_cache
    wanted = query.offset + query.top_k
    if cache is None or not cache.enabled or version_read is None:
        ranked = await _ranked_answer(services, vector, full, query, decided, stored, _depth(query))
        return ranked[query.offset:wanted], False
    key = answer_key(services, vector, query, decided, stored)
    version = await version_read
    kept = None if query.fresh else cache.get(key, version, query.offset, wanted)
    if kept is not None:
        return kept, True
    depth = _depth(query)
    ranked = await _ranked_answer(services, vector, full, query, decided, stored, depth)
    # Complete (every page of it is right) when it is shorter than a list was asked to be deep.
    cache.put(key, version, ranked, depth)
    return ranked[query.offset:wanted], False


async def _ranked_answer(services: Services, vector: np.ndarray, full: np.ndarray, query: SearchQuery,
                         decided: Plan, stored: Sequence[tuple[str, float]], depth: int) -> list[dict[str, Any]]:
    """The whole ranked list of a lexical or hybrid query, each list `depth` deep. A word search started
    without the vector gets its rows' cosines from their stored vectors, read while the vector search runs."""
    words = _with_cosines(services, decided.words, full) if decided.words is not None else blocking(
        _word_search(services), decided.lexical, vector=full, top_k=depth, offset=0, filters=query.filters)
    if decided.mode == "lexical":
        ranked = lexical_only(kept(await words, query.min_score))
    else:
        fragments, params = _lexical().exclusion_sql(decided.lexical)
        options: dict[str, Any] = {"stored_terms": list(stored)} if stored else {}
        if fragments:
            options["where"] = (fragments, params)
        nearest = blocking(services.store.search, vector, top_k=depth, min_score=query.min_score,
                           filters=query.filters, collapse=query.collapse, **options)
        vector_rows, word_rows = await asyncio.gather(nearest, words)
        word_rows = kept(word_rows, query.min_score)
        if query.fusion == "alpha":
            ranked = fuse_alpha(vector_rows, word_rows, query.alpha)
        else:
            ranked = fuse_rrf(vector_rows, word_rows, query.rrf_k)
    return ranked


def _depth(query: SearchQuery) -> int:
    return min(MAX_RESULTS, max(DEPTH, query.offset + query.top_k))


def _word_search(services: Services):
    """The store's word search as a blocking call of (query, **options). A store object may answer word
    searches itself (the tests' fake store does); a real one's are SQL (services/photostore/lexical.py)."""
    own = getattr(services.store, "lexical_search", None)
    return own if own is not None else partial(_lexical().lexical_search, services.store)


async def _with_cosines(services: Services, words: asyncio.Future, full: np.ndarray) -> list[dict[str, Any]]:
    rows = await words
    await _add_cosines(services, rows, full)
    return rows


async def _add_cosines(services: Services, rows: list[dict[str, Any]], full: np.ndarray) -> None:
    """The cosine `score` of the rows the word search found without the vector, from their stored vectors
    (one read), in place."""
    missing = [str(row["photo_id"]) for row in rows if row.get("score") is None]
    if not missing:
        return
    own = getattr(services.store, "vectors_of", None)
    if own is None and getattr(services.store, "connection", None) is not None:
        from services.photostore.sample import vectors_of

        own = partial(vectors_of, services.store)
    if own is not None:
        vectors = await blocking(own, missing)
    else:  # a store without a batch read: one photo at a time
        photos = [await blocking(services.store.get_photo, photo_id, with_vector=True) for photo_id in missing]
        vectors = {p: photo["vector"] for p, photo in zip(missing, photos) if photo and photo.get("vector") is not None}
    query = normalize(np.asarray(full, dtype=np.float32).reshape(-1))
    for row in rows:
        vector = vectors.get(str(row["photo_id"])) if row.get("score") is None else None
        if vector is not None:
            row["score"] = float(normalize(np.asarray(vector, dtype=np.float32)) @ query)


def kept(rows: list[dict[str, Any]], min_score: float | None) -> list[dict[str, Any]]:
    """Rows whose cosine score is at least `min_score` (all when None), order kept."""
    if min_score is None:
        return list(rows)
    return [row for row in rows if row.get("score") is not None and float(row["score"]) >= min_score]


def _match(vector_rank: int | None = None, vector_score: float | None = None, lexical_rank: int | None = None,
           lexical_score: float | None = None, fused_score: float | None = None,
           words: Sequence[str] = ()) -> dict[str, Any]:
    return {"vector_rank": vector_rank, "vector_score": vector_score, "lexical_rank": lexical_rank,
            "lexical_score": lexical_score, "fused_score": fused_score, "words": list(words)}


def _result(row: dict[str, Any], rank: int, match: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in row.items() if key not in ("lexical_score", "matched")}
    out["rank"], out["match"] = rank, match
    return out


def lexical_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A lexical search's rows, ranked as they came (best BM25 first)."""
    return [_result(row, number, _match(lexical_rank=number, lexical_score=_float(row.get("lexical_score")),
                                        words=row.get("matched") or ()))
            for number, row in enumerate(rows, start=1)]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _entries(vector_rows: list[dict[str, Any]], lexical_rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each photo of either list: its row (the vector search's when both have it, with the cosine score),
    and its rank and score in each list."""
    entries: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(vector_rows, start=1):
        entries.setdefault(str(row["photo_id"]), {"row": row, "vector_rank": number,
                                                  "vector_score": _float(row.get("score"))})
    for number, row in enumerate(lexical_rows, start=1):
        entry = entries.setdefault(str(row["photo_id"]), {"row": row})
        if "lexical_rank" not in entry:
            entry.update(lexical_rank=number, lexical_score=_float(row.get("lexical_score")),
                         words=row.get("matched") or ())
            if entry["row"].get("score") is None and row.get("score") is not None:
                entry["row"] = {**entry["row"], "score": row["score"]}
    return entries


def _ranked(entries: dict[str, dict[str, Any]], fused: dict[str, float]) -> list[dict[str, Any]]:
    """The photos by fused score, ties to the better vector rank, then the better lexical rank."""
    far = float("inf")
    order = sorted(entries, key=lambda photo_id: (-fused[photo_id], entries[photo_id].get("vector_rank") or far,
                                                  entries[photo_id].get("lexical_rank") or far, photo_id))
    results = []
    for number, photo_id in enumerate(order, start=1):
        entry = entries[photo_id]
        match = _match(entry.get("vector_rank"), entry.get("vector_score"), entry.get("lexical_rank"),
                       entry.get("lexical_score"), fused[photo_id], entry.get("words", ()))
        results.append(_result(entry["row"], number, match))
    return results


def fuse_rrf(vector_rows: list[dict[str, Any]], lexical_rows: list[dict[str, Any]], k: int = 60) -> list[dict[str, Any]]:
    """Reciprocal rank fusion: each list a photo is in adds 1 / (k + its rank there)."""
    entries = _entries(vector_rows, lexical_rows)
    fused = {photo_id: sum(1.0 / (k + entry[name]) for name in ("vector_rank", "lexical_rank") if name in entry)
             for photo_id, entry in entries.items()}
    return _ranked(entries, fused)


def _min_max(values: dict[str, float]) -> dict[str, float]:
    """Scores scaled to 0..1 over their own list; a list whose scores are all equal scales to 1."""
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    if high - low <= 1e-12:
        return {key: 1.0 for key in values}
    return {key: (value - low) / (high - low) for key, value in values.items()}


def fuse_alpha(vector_rows: list[dict[str, Any]], lexical_rows: list[dict[str, Any]],
               alpha: float = 0.5) -> list[dict[str, Any]]:
    """alpha * the min-max normalised cosine + (1 - alpha) * the min-max normalised BM25 score; a photo
    missing from a list counts 0 there."""
    entries = _entries(vector_rows, lexical_rows)
    vector_norm = _min_max({p: e["vector_score"] for p, e in entries.items() if e.get("vector_score") is not None})
    lexical_norm = _min_max({p: e["lexical_score"] for p, e in entries.items() if e.get("lexical_score") is not None})
    fused = {p: alpha * vector_norm.get(p, 0.0) + (1.0 - alpha) * lexical_norm.get(p, 0.0) for p in entries}
    return _ranked(entries, fused)
