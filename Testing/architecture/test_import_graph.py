"""The engine's import graph, read from the source (ast, every import, also those inside functions): no circles,
and no arrow from the lower layers (search, training, inference, data) up to the front ends of the engine (cli, commands,
report) — the end-to-end pipeline that joins them is ``AutoSegCore.pipeline``."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ENGINE = Path(__file__).resolve().parents[2] / "AutoSegCore"
LOWER = ("AutoSegCore.search", "AutoSegCore.training", "AutoSegCore.inference", "AutoSegCore.data")
HIGHER = ("AutoSegCore.cli", "AutoSegCore.commands", "AutoSegCore.report", "AutoSegCore.pipeline")
MAX_LINES = 400
# Checked for length: every module and package of the engine
LENGTH_CHECKED = tuple(sorted(p.name for p in ENGINE.iterdir()
                              if p.suffix == ".py" or (p.is_dir() and any(p.rglob("*.py")))))

def _module(path: Path) -> str:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inside(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def import_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names]
                # `from package import submodule` runs the package's __init__ as any `import package.sub` does: an
                # arrow to the package only when a name comes from its __init__ itself
                targets = names + ([base] if any(n not in files for n in names) else [])
            for t in targets:
                while t and t not in files:          # a name imported from a module → that module
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("AutoSegCore"):
                    graph[mod].add(t)
    return graph


def _graph():
    g = nx.DiGraph()
    for mod, deps in import_graph().items():
        g.add_node(mod)
        g.add_edges_from((mod, d) for d in deps if d != "AutoSegCore")
    return g


def test_the_engine_imports_have_no_circles():
    cycles = sorted(tuple(sorted(c)) for c in nx.simple_cycles(_graph()) if len(c) > 1)
    assert not cycles, "\n".join(" ↔ ".join(c) for c in cycles)


def test_lower_layers_never_import_the_front_ends():
    up = sorted(f"{a} → {b}" for a, b in _graph().edges if _inside(a, LOWER) and _inside(b, HIGHER))
    assert not up, "\n".join(up)


def test_no_arrow_runs_back_up():
    """The sub-commands never import the dispatcher that imports them (their shared option lives in
    ``utils.cli_types``), and ``utils`` imports nothing of the engine but itself and ``errors`` (the progress bars,
    which read events, sit beside ``cli.py``)."""
    g = _graph()
    up = sorted(f"{a} → {b}" for a, b in g.edges
                if (_inside(a, ("AutoSegCore.commands",)) and b == "AutoSegCore.cli")
                or (_inside(a, ("AutoSegCore.utils",)) and not _inside(b, ("AutoSegCore.utils", "AutoSegCore.errors"))))
    assert not up, "\n".join(up)


@pytest.mark.parametrize("part", LENGTH_CHECKED)
def test_no_engine_file_is_over_400_lines(part):
    target = ENGINE / part
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    long = {str(p.relative_to(ENGINE)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
