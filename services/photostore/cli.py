"""`python -m services.photostore index build|status|drop` (make index): the vector index of STORE_TABLE
at STORE_URL, with the same settings the gateway and workers read (environment, then .env)."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from services.common.errors import BadRequest
from services.photostore.client import PhotoStore
from services.photostore.errors import StoreError


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.photostore index build|status|drop`: manage the vector index of STORE_TABLE
    at STORE_URL. Build it after a bulk ingestion; rows ingested later are indexed as they arrive."""
    from services.common.config import CommonSettings

    parser = argparse.ArgumentParser(prog="python -m services.photostore", description=main.__doc__)
    parser.add_argument("what", choices=["index"])
    parser.add_argument("action", choices=["build", "status", "drop"])
    # So that the index is built on the table the gateway and workers search.
    settings = CommonSettings()
    parser.add_argument("--url", default=settings.store_url)
    parser.add_argument("--table", default=settings.store_table)
    parser.add_argument("--no-wait", action="store_true", help="start the build and return")
    args = parser.parse_args(argv)
    with PhotoStore(args.url, args.table, query_timeout=24 * 3600, **settings.store_options()) as photo_store:
        try:
            if args.action == "build":
                began = time.perf_counter()
                status = photo_store.build_index(wait=not args.no_wait)
                status["seconds"] = round(time.perf_counter() - began, 1)
            elif args.action == "drop":
                photo_store.drop_index()
                status = photo_store.index_status()
            else:
                status = photo_store.index_status()
        except (StoreError, BadRequest) as error:
            print(error.message)
            return 1
    print(json.dumps(status))
    return 0
