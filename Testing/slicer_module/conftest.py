"""Fixtures for the Slicer module tests: a fresh headless MRML "application" per test (real slicer-core)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AutoSegSearch"

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
os.environ.setdefault("AUTOSEG_THREADS", "1")
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def _import_real_slicer():
    """Import slicer-core's ``slicer`` without this folder joining its namespace.

    ``slicer/__init__.py`` uses ``pkgutil.extend_path``: any ``<sys.path entry>/slicer`` directory becomes part of
    the package and every module in it is imported into ``slicer`` (this folder's conftest would become
    ``slicer.app``...). Testing/conftest.py puts Testing/ on sys.path, so hide it while slicer is first imported;
    ``slicer.__path__`` is computed once, then the entries come back.
    """
    here = Path(__file__).resolve().parent
    hidden = [p for p in sys.path if p and (Path(p).resolve() / "slicer") == here]
    for p in hidden:
        while p in sys.path:
            sys.path.remove(p)
    try:
        import slicer  # noqa: F401 - real MRML from the slicer-core wheel
    finally:
        sys.path[:0] = hidden
    assert str(here) not in [str(Path(p).resolve()) for p in slicer.__path__], slicer.__path__


try:
    _import_real_slicer()
except ImportError:  # the engine-only install: these suites need `pip install 'slicer-core==5.11.0.6'`
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.slicer)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread when torch is loaded here (the engine's child processes get AUTOSEG_THREADS=1)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture
def app():
    """(scene, app_logic) with Colors/Volumes/Segmentations/SubjectHierarchy logics; cleared afterwards."""
    from AutoSegSearchLib.headless import close_headless_app, make_headless_app

    scene, app_logic = make_headless_app()
    yield scene, app_logic
    close_headless_app(scene, app_logic)


@pytest.fixture
def logic(app):
    from AutoSegSearchLib.logic import PanelLogic

    scene, app_logic = app
    return PanelLogic(scene, app_logic=app_logic)
