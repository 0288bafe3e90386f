"""The store's errors: each carries an HTTP status, a stable code and a sentence a person can act on."""
from __future__ import annotations

from services.common.errors import BadRequest, DependencyFailed, DependencyUnavailable


class StoreError(DependencyFailed):
    """The store refused or failed a call (502 at a gateway); the message is a sentence for a person."""

    code = "store_error"


class StoreUnavailable(StoreError, DependencyUnavailable):
    """The store cannot be reached (connection refused, timeout): 503 with Retry-After."""

    status_code = 503
    code = "store_unavailable"


class ModelMismatch(StoreError):
    """The table holds vectors of another model or dimension (409): the message says how to re-index."""

    status_code = 409
    code = "model_mismatch"


class InvalidFilter(BadRequest):
    """A search filter names an unknown column or an operator that does not fit it (422), on every route."""

    code = "invalid_filter"
