"""`make search Q="..."`: search from a terminal, through the gateway (HTTP only), and print a table of
results with score, photographer and link.

The query is built of weighted terms, as POST /v1/search's `terms`: the text itself (weight 1),
`--plus TEXT` (+1), `--minus TEXT` (-1, "less like this"), `--like PHOTO_ID` (a stored photo, +1),
`--unlike PHOTO_ID` (-1), `--image PATH` (an image file, +1). `--mode lexical|hybrid` matches the words
too (`--fusion`, `--alpha`), `--min-relevance 0.99` keeps photos closer than 99% of the library; the
table shows each result's relevance and, in those modes, the words it matched. Exit status: 0 with results or none,
1 when the gateway refused the query (its sentence is printed), 2 when it could not be reached.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from services.common.config import CommonSettings

EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make search", description=__doc__.split("\n\n")[0])
    parser.add_argument("query", nargs="?", default="", help="what to look for, in words")
    parser.add_argument("--plus", action="append", default=[], metavar="TEXT", help="more like these words")
    parser.add_argument("--minus", action="append", default=[], metavar="TEXT", help="less like these words")
    parser.add_argument("--like", action="append", default=[], metavar="PHOTO_ID", help="more like a stored photo")
    parser.add_argument("--unlike", action="append", default=[], metavar="PHOTO_ID", help="less like a stored photo")
    parser.add_argument("--image", action="append", default=[], metavar="PATH", help="more like an image file")
    parser.add_argument("--kind", choices=("photo", "video"), help="only photos, or only videos")
    parser.add_argument("--top-k", type=int, default=10, help="how many results (default 10)")
    parser.add_argument("--mode", choices=("vector", "lexical", "hybrid"),
                        help="by the vector, by the words, or both fused (default: the gateway's API_SEARCH_MODE)")
    parser.add_argument("--fusion", choices=("rrf", "alpha"), help="how hybrid fuses its two lists (default rrf)")
    parser.add_argument("--alpha", type=float, help="with --fusion alpha: the vector's share, 0 to 1")
    parser.add_argument("--min-relevance", type=float, metavar="SHARE",
                        help="only photos closer to the query than this share of the library, e.g. 0.99")
    parser.add_argument("--api-url", help="the gateway (default: API_URL)")
    parser.add_argument("--api-key", help="when reads need a key (default: API_KEY, else the first of API_KEYS)")
    return parser.parse_args(argv)


def terms_of(args: argparse.Namespace) -> list[dict]:
    """The query's weighted terms; an unreadable image file is the caller's mistake (OSError)."""
    terms: list[dict] = []
    if args.query.strip():
        terms.append({"text": args.query, "weight": 1.0})
    terms += [{"text": text, "weight": 1.0} for text in args.plus]
    terms += [{"text": text, "weight": -1.0} for text in args.minus]
    terms += [{"photo_id": photo_id, "weight": 1.0} for photo_id in args.like]
    terms += [{"photo_id": photo_id, "weight": -1.0} for photo_id in args.unlike]
    terms += [{"image": Path(path).expanduser().read_bytes(), "weight": 1.0} for path in args.image]
    return terms


def table(results, width: int) -> str:
    """Rank, score, relevance, photo id, the words matched (lexical and hybrid), photographer and link, one
    photo a line; the link is never cut."""
    with_words = any(_match(hit) is not None for hit in results)
    rows = [("#", "score", "relevance", "photo", *(("words",) if with_words else ()), "photographer", "link")]
    rows += [(str(hit.rank), f"{hit.score:.3f}", _relevance(hit), hit.photo_id + _video(hit),
              *((_words(hit),) if with_words else ()), hit.photographer or "-", hit.link) for hit in results]
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    # Narrow terminals: shorten the photographer column first, never the link.
    spare = width - sum(widths) - 2 * last - max(len(row[last]) for row in rows)
    if spare < 0:
        widths[last - 1] = max(12, widths[last - 1] + spare)
    lines = []
    for row in rows:
        cells = [row[i][:widths[i]].ljust(widths[i]) if i else row[i].rjust(widths[i]) for i in range(last)]
        lines.append("  ".join([*cells, row[last]]))
    return "\n".join(lines)


def _match(hit) -> dict | None:
    match = getattr(hit, "match", None)
    return match if isinstance(match, dict) or match is None else dict(match)


def _relevance(hit) -> str:
    value = getattr(hit, "relevance", None)
    return "-" if value is None else f"{value:.3f}"


def _words(hit) -> str:
    match = _match(hit) or {}
    return ",".join(match.get("words") or ()) or "-"


def _video(hit) -> str:
    """A video's mark: the time of the frame shown, of its length."""
    if hit.kind != "video":
        return ""
    return f" (video, {clock(hit.frame_s or 0)} of {clock(hit.duration_s or 0)})"


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from services.common.api_client import ApiClient, ApiError

    settings = CommonSettings()
    api_url = (args.api_url or settings.api_url).rstrip("/")
    key = args.api_key or os.environ.get("API_KEY") or (settings.api_key_list or [None])[0]
    try:
        terms = terms_of(args)
    except OSError as exc:
        print(f"error: cannot read the image {exc.filename}: {exc.strerror}.", file=sys.stderr)
        return EXIT_REFUSED
    if not terms:
        print('error: say what to search for: make search Q="a beach at sunset" (or --like, --image).',
              file=sys.stderr)
        return EXIT_REFUSED
    try:
        with ApiClient(api_url, api_key=key) as client:
            kind = {"video": "video", "photo": {"ne": "video"}}.get(args.kind)
            answer = client.search_results(terms=terms, top_k=args.top_k, filters={"kind": kind} if kind else None,
                                           mode=args.mode, fusion=args.fusion, alpha=args.alpha,
                                           min_relevance=args.min_relevance)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.status == 0 else EXIT_REFUSED
    if not answer.results:
        print("No photos found (is anything ingested? make ingest SOURCE=...).")
    else:
        print(table(answer.results, shutil.get_terminal_size((120, 20)).columns))
    mode = getattr(answer, "mode", None)
    print(f"{len(answer.results)} results in {answer.took_ms:.0f} ms (model {answer.model}"
          + (f", {mode} search" if mode else "") + ").")
    for notice in getattr(answer, "notices", None) or ([answer.notice] if answer.notice else []):
        print(notice)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
