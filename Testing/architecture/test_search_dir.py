"""The layout of a search's work folder is spelled in one module, ``AutoSegCore/search/search_dir.py``: the engine,
the report, the Slicer library, the web page and the benches name its files and folders through ``SearchDir``.

Read from the source (ast): a string literal naming one of the folder's files, or a path joined with one of its
folder names, anywhere else fails.  Generic names that other folders use too (``cache``, ``predictions``,
``preprocessing``: a proxy-selection folder, a Slicer apply folder, a demo folder) are not searched for."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "AutoSegCore" / "search" / "search_dir.py"
SOURCES = [p for part in ("AutoSegCore", "AutoSegSearch", "AutoSegWeb", "bench")
           for p in sorted((ROOT / part).rglob("*.py")) if p != OWNER and "_v1" not in p.stem]
FILES = {"search.json", "study.db", "plan.json", "forecast.json", "fingerprint.json", "proxy.json", "summary.json",
         "final.json", "report.html"}
FOLDERS = {"trials", "best", "final", "fingerprints"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def spelled_elsewhere(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if node.value in FILES or any(node.value.endswith("/" + f) for f in FILES):
                hits.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value in FOLDERS:
            hits.append(f"{path.relative_to(root)}:{node.lineno}: / {node.right.value!r}")
    return hits


def test_the_owner_names_every_file_it_is_checked_for():
    from AutoSegCore.search.search_dir import SearchDir

    d = SearchDir("/w")
    named = {p.name for p in (d.settings, d.study_db, d.plan, d.forecast, d.fingerprint, d.proxy, d.summary,
                              d.final_record, d.report)}
    assert named == FILES
    assert {d.trial(7).parent.name, d.best.name, d.final().name, d.fingerprint_of("k").parent.name} == FOLDERS
    assert d.trial(7) == Path("/w/trials/0007") and d.final("rank0_trial3") == Path("/w/final/rank0_trial3")


def test_an_older_search_s_final_record_is_still_found(tmp_path):
    """Searches before the rename wrote final/summary.json: their report keeps its final-training section."""
    from AutoSegCore.search.search_dir import SearchDir

    d = SearchDir(tmp_path)
    assert d.final_record == tmp_path / "final" / "final.json"
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "summary.json").write_text("{}")
    assert d.final_record == tmp_path / "final" / "summary.json"
    (tmp_path / "final" / "final.json").write_text("{}")
    assert d.final_record == tmp_path / "final" / "final.json"


@pytest.mark.parametrize("part", ["AutoSegCore", "AutoSegSearch", "AutoSegWeb", "bench"])
def test_no_other_module_spells_the_search_folder(part):
    hits = [h for p in SOURCES if p.is_relative_to(ROOT / part) for h in spelled_elsewhere(p)]
    assert not hits, "spell these through AutoSegCore.search.search_dir.SearchDir:\n" + "\n".join(hits)


def test_the_check_finds_a_spelled_path(tmp_path):
    """The grep itself works: a module that joins ``/ "best"`` or names ``summary.json`` is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""doc naming summary.json is fine"""\nfrom pathlib import Path\n'
                   'p = Path("x") / "best"\nq = "report.html"\n')
    hits = [h.split(": ", 1)[1] for h in sorted(spelled_elsewhere(bad, tmp_path), key=lambda h: int(h.split(":")[1]))]
    assert hits == ["/ 'best'", "'report.html'"]
