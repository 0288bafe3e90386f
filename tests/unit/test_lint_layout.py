"""The layout checks of `make lint` find what they are for: an import cycle, an oversized module."""
from __future__ import annotations

import sys

from tools.lint_layout import crossed_boundaries, import_cycle, oversized_modules


def _package(root, name: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path, monkeypatch):
    _package(tmp_path, "cyclic_pkg", {
        "app": "import cyclic_pkg.tasks\n",
        "tasks": "def close():\n    from cyclic_pkg import app\n    return app\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    cycle = import_cycle(("cyclic_pkg",))
    assert cycle is not None
    assert set(cycle) == {"cyclic_pkg.app", "cyclic_pkg.tasks"}
    sys.modules.pop("cyclic_pkg", None)


def test_a_package_without_a_cycle_passes(tmp_path, monkeypatch):
    _package(tmp_path, "acyclic_pkg", {"app": "from acyclic_pkg import tasks\n", "tasks": "X = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycle(("acyclic_pkg",)) is None


def test_modules_over_the_limit_are_listed_largest_first(tmp_path):
    _package(tmp_path, "sized", {"small": "x = 1\n" * 10, "big": "x = 1\n" * 50, "bigger": "x = 1\n" * 60})
    found = oversized_modules(tmp_path, ("sized",), max_lines=40)
    assert [(str(path), lines) for path, lines in found] == [("sized/bigger.py", 60), ("sized/big.py", 50)]


def test_a_part_importing_another_is_found(monkeypatch):
    monkeypatch.setattr("tools.lint_layout.SERVICES", ("services.api", "services.worker"))
    monkeypatch.setattr("tools.lint_layout.LIBRARIES", ("services.common",))
    # The gateway reaches the worker's settings module only through a chain the graph can see.
    import grimp

    real_build = grimp.build_graph

    def with_crossing(*packages, **options):
        graph = real_build(*packages, **options)
        graph.add_import(importer="services.api.deps", imported="services.worker.config")
        return graph

    monkeypatch.setattr(grimp, "build_graph", with_crossing)
    assert crossed_boundaries() == ["services.api -> services.worker (services.api.deps -> services.worker.config)"]


def test_the_project_itself_passes():
    assert import_cycle() is None
    assert crossed_boundaries() == []
    assert oversized_modules() == []
