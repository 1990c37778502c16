"""The package layout's import rules (docs/design.md, "Layout"), read from the source with ``ast``.

* the recipe (``uec_recipe``) never imports the lab (``uec_lab``) or the data tools (``data_prep``);
* inside the recipe only the plugin reaches the CPU backend (``uec_recipe.cpu``), so a GPU run never loads it;
* the study package imports in one direction: ``plan`` <- ``report``, ``report_v2`` <- ``run``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in sorted(imported_modules(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


def test_imported_modules_sees_lazy_and_from_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom a.b import c\ndef f():\n    import uec_lab.demo\n    from . import sibling\n")
    assert imported_modules(module) == {"os", "a.b", "a.b.c", "uec_lab.demo"}


def test_recipe_never_imports_the_lab_or_data_tools():
    assert sources("uec_recipe"), "uec_recipe/ has no sources: the layout moved"
    assert offending(sources("uec_recipe"), ("uec_lab", "data_prep")) == []


def test_only_the_plugin_reaches_the_cpu_backend():
    recipe = [p for p in sources("uec_recipe") if "cpu" not in p.relative_to(REPO / "uec_recipe").parts[:1]]
    outside_plugin = [p for p in recipe if p.name != "plugin.py"]
    assert offending(outside_plugin, ("uec_recipe.cpu",)) == []


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("plan.py", ("uec_lab.study.run", "uec_lab.study.report", "uec_lab.study.report_v2")),
        ("report.py", ("uec_lab.study.run", "uec_lab.study.report_v2")),
        ("report_v2.py", ("uec_lab.study.run", "uec_lab.study.report")),
    ],
)
def test_study_package_imports_in_one_direction(module, forbidden):
    assert offending([REPO / "uec_lab" / "study" / module], forbidden) == []
