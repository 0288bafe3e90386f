"""`python -m tools.lint_layout`: the layout checks of `make lint`: no import cycles, no oversized modules,
and no deployable part importing another (docs/architecture.md, "The parts").

An import cycle between two modules means neither can be understood (or tested) without the other, and
a module past about 400 lines is usually several modules. Both drift in silently, so `make lint` fails
on them. The import graph comes from grimp (the engine of import-linter); graphlib finds the cycle.
"""
from __future__ import annotations

import argparse
import graphlib
import sys
from pathlib import Path

PACKAGES = ("services", "ui", "tools", "bench", "tests")
MAX_LINES = 400
ROOT = Path(__file__).resolve().parents[1]


def import_cycle(packages: tuple[str, ...] = PACKAGES) -> list[str] | None:
    """One cycle of imports between the project's modules (every import counts, also those inside
    functions, since they bind the modules together just the same), or None."""
    import grimp

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


# Deployable parts: none imports another. Libraries: they import no deployable part.
SERVICES = ("services.api", "services.worker", "services.embedder", "services.embedded_store", "ui")
LIBRARIES = ("services.common", "services.photostore", "services.media", "services.backup")


def crossed_boundaries(packages: tuple[str, ...] = ("services", "ui")) -> list[str]:
    """'a -> b' for each deployable part or library that imports a deployable part it must not."""
    import grimp

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    found = []
    for importer in (*SERVICES, *LIBRARIES):
        for imported in SERVICES:
            if importer != imported and graph.chain_exists(importer=importer, imported=imported, as_packages=True):
                chain = graph.find_shortest_chains(importer=importer, imported=imported, as_packages=True)
                found.append(f"{importer} -> {imported} ({' -> '.join(min(chain, key=len))})")
    return found


def oversized_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES,
                      max_lines: int = MAX_LINES) -> list[tuple[Path, int]]:
    """Python files over `max_lines` lines, largest first."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > max_lines:
                found.append((path.relative_to(root), lines))
    return sorted(found, key=lambda item: -item[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lint_layout", description=__doc__.splitlines()[0])
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    failed = False
    cycle = import_cycle()
    if cycle:
        print("import cycle: " + " -> ".join(cycle))
        failed = True
    for crossing in crossed_boundaries():
        print(f"a part imports another part: {crossing}")
        failed = True
    for path, lines in oversized_modules(max_lines=args.max_lines):
        print(f"{path}: {lines} lines (at most {args.max_lines}: split it by job)")
        failed = True
    if not failed:
        print(f"layout: no import cycle, no part importing another, no module over {args.max_lines} lines")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
