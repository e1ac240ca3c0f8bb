"""No class is assembled from our own mixins (issue 31): a class of the engine, the Slicer module or the web page
has at most one base class defined in this code (an is-a, e.g. an error or a sampler family); parts are held as
attributes (``PanelLogic.exporter``, the web app's ``plan_panel``, the runner's ``PreparedStudy``)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("AutoSegCore", "AutoSegSearch", "AutoSegWeb")


def _classes(sources: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    found = []
    for where, text in sources.items():
        for node in ast.walk(ast.parse(text, where)):
            if isinstance(node, ast.ClassDef):
                found.append((where, node.name, [ast.unparse(b).split(".")[-1] for b in node.bases]))
    return found


def assembled_from_own_parts(sources: dict[str, str]) -> list[str]:
    """Classes with two or more bases that are classes of ``sources`` themselves."""
    classes = _classes(sources)
    own = {name for _, name, _ in classes}
    return sorted(f"{where}: {name}({', '.join(bases)})" for where, name, bases in classes
                  if sum(b in own for b in bases) > 1)


def test_no_class_of_ours_is_assembled_from_our_own_mixins():
    sources = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8")
               for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    assert len(sources) > 100
    assert assembled_from_own_parts(sources) == []


def test_the_check_sees_a_mixin_assembly():
    planted = {"a.py": "class Export:\n    pass\nclass Import:\n    pass\nclass Logic(Export, Import):\n    pass\n",
               "b.py": "import qt\nclass Widget(qt.QWidget, Export):\n    pass\n"}
    assert assembled_from_own_parts(planted) == ["a.py: Logic(Export, Import)"]
