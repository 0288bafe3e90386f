"""Estimate each service image's Python payload from the wheels installed in this environment.

For each extra of pyproject.toml (one per service image), walk the dependency closure through the
installed distributions' metadata (`importlib.metadata`), honouring environment markers and the extras
each requirement asks for, and add up the sizes of the files each distribution installed (its RECORD).
No Docker engine is needed; the figure excludes the base image (python:3.11-slim, about 130 MB) and
the project's own code. `python -m tools.image_sizes` prints a table; `--json` the raw figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

SERVICES = ("embedder", "store", "worker", "api", "ui")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    """The distribution's requirements that apply here, for the extras asked of it."""
    wanted = []
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None:
            wanted.append(requirement)
            continue
        environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        if any(requirement.marker.evaluate(env) for env in environments):
            wanted.append(requirement)
    return wanted


def roots(extra: str, pyproject: Path = PYPROJECT) -> list[Requirement]:
    """What `pip install .[extra]` asks for directly, read from this checkout's pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = project["dependencies"] + project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def closure(extra: str, pyproject: Path = PYPROJECT) -> dict[str, metadata.Distribution]:
    """Every installed distribution that `pip install .[extra]` pulls in (the project itself excluded)."""
    seen: dict[str, metadata.Distribution] = {}
    asked: set[tuple[str, frozenset[str]]] = set()
    todo = [(requirement.name, set(requirement.extras)) for requirement in roots(extra, pyproject)]
    while todo:
        name, extras = todo.pop()
        key = (_canonical(name), frozenset(extras))
        if key in asked:
            continue
        asked.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[_canonical(name)] = dist
        for requirement in _requirements(dist, extras):
            todo.append((requirement.name, set(requirement.extras)))
    return seen


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def estimate(extra: str) -> dict[str, object]:
    dists = closure(extra)
    sizes = {name: installed_bytes(dist) for name, dist in dists.items()}
    biggest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
    return {"extra": extra, "packages": len(sizes), "bytes": sum(sizes.values()),
            "largest": [{"name": name, "bytes": size} for name, size in biggest],
            "has_torch": "torch" in sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", default=list(SERVICES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [estimate(extra) for extra in args.extras]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'image':10s} {'packages':>8s} {'MB':>8s}  largest")
    for row in rows:
        largest = ", ".join(f"{item['name']} {item['bytes'] / 1e6:.0f}" for item in row["largest"])
        print(f"{row['extra']:10s} {row['packages']:8d} {row['bytes'] / 1e6:8.0f}  {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
