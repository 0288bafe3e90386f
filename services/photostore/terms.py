"""Stored photos as query terms: their vectors, weighted, are added to the query vector inside the
search's SQL, so they never travel between the store and the gateway. Only plain array functions
(arrayMap, arraySum, arrayResize), which ClickHouse and MyScale both have."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.errors import BadRequest, NotFound
from services.photostore.sql import table_ref


def stored_terms_sql(database: str, table: str,
                     stored_terms: Sequence[tuple[str, float]]) -> tuple[str, dict[str, Any]]:
    """`WITH` definitions of `qv`: the query vector `{q}` plus, for each (photo_id, weight), that stored
    photo's unit vector times the weight, summed in the server, so stored vectors never travel to the
    caller. Also `found_i` (the stored vector's length; 0 when there is no such photo)."""
    ref = table_ref(database, table)
    parts, params, names = [], {}, []
    for i, (photo_id, weight) in enumerate(stored_terms):
        params[f"s{i}_id"], params[f"s{i}_w"] = str(photo_id), float(weight)
        # An aggregate always answers one row (an empty array when there is no such photo); argMax picks
        # the newest version of a photo written twice.
        parts.append(f"(SELECT argMax(photo_embed, inserted_at) FROM {ref} WHERE photo_id = {{s{i}_id:String}}) AS s{i}")
        parts.append(f"length(s{i}) AS found_{i}")
        # A missing photo is a vector of zeros (arrayResize pads), so the query fails only by our check.
        parts.append(f"arrayResize(s{i}, length({{q:Array(Float32)}})) AS r{i}")
        parts.append(f"greatest(sqrt(arraySum(x -> x * x, r{i})), 1e-12) AS n{i}")
        names.append(i)
    lambda_args = ", ".join(["p", *(f"a{i}" for i in names)])
    summed = " + ".join(["p", *(f"{{s{i}_w:Float64}} * a{i} / n{i}" for i in names)])
    arrays = ", ".join(["{q:Array(Float32)}", *(f"r{i}" for i in names)])
    parts.append(f"arrayMap(({lambda_args}) -> toFloat32({summed}), {arrays}) AS qv")
    return "WITH\n    " + ",\n    ".join(parts) + "\n", params


def stored_terms_check_sql(with_clause: str, count: int) -> str:
    """Whether each stored photo exists, and the length of the summed query vector (0: the terms cancel)."""
    found = ", ".join(f"found_{i}" for i in range(count))
    return with_clause + f"SELECT [{found}], sqrt(arraySum(x -> x * x, qv))"


def stored(store: Any, sql_text: str, params: dict[str, Any],
           stored_terms: Sequence[tuple[str, float]]) -> tuple[str, dict[str, Any]]:
    """A search's SQL and parameters (with `q`, the query vector) turned into a search by `q` plus the
    stored photos' weighted unit vectors: a WITH clause defines their sum `qv`, and the distance is taken
    to it. Checked first in one small query: every stored photo exists (404), and the terms do not
    cancel out (422). Without stored terms, the search is returned as it is."""
    if not stored_terms:
        return sql_text, params
    by_q, by_qv = store.dialect.distance("photo_embed", "q"), store.dialect.distance_to("photo_embed", "qv")
    if by_q not in sql_text:
        raise ValueError("the search SQL does not take its distance to {q}")
    with_clause, more = stored_terms_sql(store.database, store.table, stored_terms)
    params = {**params, **more}
    rows = store.connection.read_rows("query terms", stored_terms_check_sql(with_clause, len(stored_terms)), params)
    found, norm = rows[0]
    for (photo_id, _), length in zip(stored_terms, found):
        if not length:
            raise NotFound(f"No photo with photo_id {photo_id!r} is in the store.", code="photo_not_found")
    if not float(norm) > 1e-4:
        raise BadRequest("The query's terms cancel each other out (their weighted sum is zero): change a "
                         "weight or add a term.", code="terms_cancel_out")
    return with_clause + sql_text.replace(by_q, by_qv), params
