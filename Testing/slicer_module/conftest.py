"""Fixtures for the Slicer module tests: a fresh headless MRML "application" per test (real slicer-core)."""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "AutoSegSearch"
STUBS = Path(__file__).parent / "slicer_stubs"

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


VTK_ERROR = ("ERR| ", "ERROR: In ")      # VTK's logger and its output window: an error in a user's Slicer log


@pytest.fixture(autouse=True)
def _no_vtk_errors(capfd):
    """Every Slicer test reads its own captured output (fd level: VTK writes from C++ and worker threads) after
    its objects are freed, and fails on a VTK error line: in Slicer that line lands in the user's error log."""
    yield
    import gc

    gc.collect()
    out, err = capfd.readouterr()
    sys.stdout.write(out)
    sys.stderr.write(err)                     # back into the capture: shown with the report if the test fails
    errors = [line for line in (out + err).splitlines() if any(mark in line for mark in VTK_ERROR)]
    assert not errors, "VTK logged errors:\n" + "\n".join(errors[:10])


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


def _load_stub(name: str, file: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, STUBS / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def module_with_stubs(monkeypatch, app):
    """The module file imported with the stand-in qt/ctk/scripted-module modules of slicer_stubs/ (the Widget's
    Qt exists only in the desktop Slicer); its Logic runs on the real MRML of ``app``."""
    import slicer

    for name, file in (("qt", "qt.py"), ("ctk", "ctk.py"),
                       ("slicer.ScriptedLoadableModule", "ScriptedLoadableModule.py"),
                       ("slicer.parameterNodeWrapper", "parameterNodeWrapper.py")):
        module = _load_stub(name, file)
        monkeypatch.setitem(sys.modules, name, module)
        if name.startswith("slicer."):
            monkeypatch.setattr(slicer, name.split(".", 1)[1], module, raising=False)
    spec = importlib.util.spec_from_file_location("AutoSegSearch", MODULE_DIR / "AutoSegSearch.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "AutoSegSearch", module)
    spec.loader.exec_module(module)
    return module
