"""The Slicer module runs the engine with its own Slicer's Python, never another ``PythonSlicer`` found first on PATH,
and hands pip a path with spaces as one argument (Slicer's real ``pip_install`` and a real pip, dry-run)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import slicer.util

from AutoSegSearchLib import install, process


def _python_slicer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "PythonSlicer"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_the_engine_python_is_the_one_beside_this_slicer_not_the_first_on_path(tmp_path, monkeypatch):
    home = tmp_path / "Slicer 5.10.0"
    ours = _python_slicer(home / "bin")
    other = _python_slicer(tmp_path / "Slicer-5.6" / "bin")
    monkeypatch.setenv("PATH", f"{other.parent}{os.pathsep}{os.environ['PATH']}")      # another Slicer first
    monkeypatch.setattr(slicer, "app", type("App", (), {"slicerHome": str(home)})(), raising=False)
    monkeypatch.setattr(sys, "executable", str(home / "bin" / "SlicerApp-real"))
    assert process.engine_python() == str(ours)
    monkeypatch.setattr(sys, "executable", str(home / "lib" / "Python" / "bin" / "python3"))   # not beside it
    assert process.engine_python() == str(ours)                                             # found in bin/
    monkeypatch.setattr(slicer, "app", type("App", (), {"slicerHome": str(tmp_path / "none")})(), raising=False)
    assert process.engine_python() == sys.executable                                        # never PATH's


def test_an_engine_path_with_spaces_reaches_pip_as_one_argument(tmp_path, monkeypatch):
    project = tmp_path / "with space" / "engine"
    (project / "tinyengine").mkdir(parents=True)
    (project / "tinyengine" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                            'build-backend = "setuptools.build_meta"\n'
                                            '[project]\nname = "tinyengine"\nversion = "0.1"\n')
    monkeypatch.setenv("AUTOSEG_ENGINE_SPEC", str(project))
    ran: list[list[str]] = []

    def run_module(module, args):          # what Slicer's launcher does, with this Python instead of PythonSlicer
        ran.append(list(args))
        env = {**os.environ, "PIP_DRY_RUN": "1", "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1",
               "PIP_NO_BUILD_ISOLATION": "0"}       # pip's env spelling: 0 turns build isolation off
        subprocess.run([sys.executable, "-m", module, *args], check=True, capture_output=True, env=env, timeout=300)

    monkeypatch.setattr(slicer.util, "_executePythonModule", run_module)
    real = importlib.util.find_spec
    monkeypatch.setattr(install.importlib.util, "find_spec",
                        lambda name, *a: None if name == "AutoSegCore" and not ran else real(name, *a))
    assert install.install_engine(confirm=lambda text: True, pip_install=slicer.util.pip_install)
    assert ran == [["install", str(project)]]
