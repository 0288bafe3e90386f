"""What the embedder clients raise, and the checks every answer from an embedder passes.

An answer from the embedder is checked like any input, since a wrong one would be stored or ranked:
each check returns the value or raises `EmbedderFailed` (code `embedder_malformed`) saying what is wrong.
`services.common.embedder_client` is the one user; its callers import these names from there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.errors import BadRequest, DependencyFailed, DependencyTimeout, DependencyUnavailable


class EmbedderUnavailable(DependencyUnavailable):
    code = "embedder_unavailable"


class EmbedderBusy(EmbedderUnavailable):
    """The embedder answered 503 (loading, saturated): it is up and says, in `retry_after`, when to
    come back. Workers wait that long as often as it asks, without counting a retry."""


class EmbedderTimeout(DependencyTimeout):
    """A hung embedder. To whoever called the gateway it is as unavailable as a dead one, and will
    likely answer again shortly: 503 with Retry-After, not 504, which says only that the gateway gave up.
    Still a DependencyTimeout, so the workers retry it with backoff as before."""

    status_code = 503
    code = "embedder_timeout"

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message, retry_after=retry_after)


class EmbedderRejected(BadRequest):
    code = "embedder_rejected"


class EmbedderFailed(DependencyFailed):
    code = "embedder_failed"


class EmbedderModelNotLoaded(EmbedderRejected):
    """The embedder does not hold the model named (and loading it on demand did not help)."""

    code = "model_not_loaded"


class EmbedderModelFailed(EmbedderRejected):
    """The embedder could not load the model asked for; the message is its sentence saying why."""

    code = "model_failed"


@dataclass(frozen=True)
class EmbedItemError:
    """Why the embedder refused one item of a per-item request (a value, never raised)."""

    code: str
    message: str



def malformed(what: str) -> EmbedderFailed:
    return EmbedderFailed(f"The embedder answered with a malformed body ({what}); check that EMBEDDER_URL "
                          "points at this project's embedder.", code="embedder_malformed")


def vector_rows(rows: object, count: int, dim: object) -> np.ndarray:
    """`rows` as a (count, dim) float32 array of finite numbers, or EmbedderFailed saying what is wrong:
    an answer from the embedder is checked like any input, since a wrong one would be stored or ranked."""
    if not isinstance(rows, list) or len(rows) != count:
        raise malformed(f"expected {count} vectors")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise malformed(f"dim {dim!r} is not a positive integer")
    try:
        vectors = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise malformed("vectors are not lists of numbers") from None
    if vectors.shape != (count, dim):
        raise malformed(f"vectors of shape {vectors.shape}, expected ({count}, {dim})")
    if not np.isfinite(vectors).all():
        raise malformed("vectors hold NaN or infinite numbers")
    return vectors


def model_info_of(info: object) -> dict:
    dim = info.get("dim") if isinstance(info, dict) else None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or not isinstance(info.get("name"), str):
        raise malformed("model info without a name and a positive integer dim")
    return info


def vectors_of(body: dict, count: int) -> np.ndarray:
    if not isinstance(body, dict):
        raise malformed("not a JSON object")
    return vector_rows(body.get("vectors"), count, body.get("dim"))


def items_of(body: dict, count: int) -> list[np.ndarray | EmbedItemError]:
    if not isinstance(body, dict) or not isinstance(body.get("vectors"), list) or len(body["vectors"]) != count:
        raise malformed(f"expected {count} per-item answers")
    errors = body.get("errors") or [None] * count
    if not isinstance(errors, list) or len(errors) != count:
        raise malformed(f"expected {count} per-item errors")
    out: list[np.ndarray | EmbedItemError] = []
    for vector, error in zip(body["vectors"], errors):
        if vector is None:
            error = error if isinstance(error, dict) else {}
            out.append(EmbedItemError(str(error.get("code", "refused")),
                                      str(error.get("message", "The embedder gave no vector for this image."))))
        else:
            out.append(vector_rows([vector], 1, body.get("dim"))[0])
    return out


def models_of(body: object) -> list:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise malformed("the model list is not a list of objects")
    return body


def check_model(body: object, wanted: str | None) -> None:
    """An answer for `wanted` must come from that model: an embedder older than `?model=` ignores it and
    answers with its one model, whose vectors would then be stored or ranked as another's."""
    if wanted is None or not isinstance(body, dict):
        return
    answered = body.get("model", body.get("name"))
    if answered != wanted:
        raise EmbedderFailed(f"The embedder answered with the model {answered!r}, not {wanted!r} as asked; an "
                             "embedder that serves one model only cannot do this: update it.",
                             code="embedder_wrong_model")
