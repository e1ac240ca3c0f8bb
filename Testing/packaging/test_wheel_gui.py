"""`pip install 'AutoSegCore[web]'` from a built wheel gives a working `autoseg gui`: the wheel carries AutoSegWeb
and the Slicer module's Qt-free AutoSegSearchLib, and nothing depends on the source tree or on ``sys.path`` edits.

The wheel is built from a copy of the packaged sources (``pip wheel --no-deps``) and installed with ``--no-deps``
into a fresh venv that sees the project's installed dependencies through a ``.pth`` line (no download), not the
checkout: the page is then served from the installed copy only."""
from __future__ import annotations

import os
import re
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.web]

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["AutoSegCore", "AutoSegWeb", "AutoSegSearch/AutoSegSearchLib", "pyproject.toml", "setup.py", "README.md"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("trame_slicer")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    for name in SOURCES:
        origin, dest = REPO / name, src / name
        if origin.is_dir():
            shutil.copytree(origin, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, dest)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", base / "dist", src])
    wheel = next((base / "dist").glob("autosegcore-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the dependencies the project's environment already holds (torch, trame-slicer, …), after the venv's own
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "project-deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    _run([py, "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index", "-q", wheel])
    return venv


def test_wheel_carries_the_front_ends_and_imports_them_from_itself(installed):
    py = installed / "bin" / "python"
    r = _run([py, "-c", "import AutoSegCore, AutoSegWeb, AutoSegSearchLib.logic, AutoSegWeb.slicer_lib as s, sys; "
                        "print(AutoSegCore.__file__, AutoSegWeb.__file__, AutoSegSearchLib.logic.__file__); "
                        "print(s.PanelLogic.__module__)"], cwd=installed.parent, env=_env())
    files = r.stdout.split()
    assert all(f.startswith(str(installed)) for f in files[:3]), files
    assert files[3] == "AutoSegSearchLib.logic"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "AUTOSEG_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def test_installed_autoseg_gui_serves_the_page(installed, tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    port = _free_port()
    log = tmp_path / "gui.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([installed / "bin" / "autoseg", "gui", "--data", data, "--work", work,
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env())
    try:
        deadline, page = time.monotonic() + 300, None
        while page is None:
            try:
                # the URL it printed carries this start's key (without it the page answers 403)
                url = re.search(rf"http://127\.0\.0\.1:{port}/\?secret=\S+", log.read_text()).group(0)
                page = urllib.request.urlopen(url, timeout=5).read().decode()
            except (OSError, AttributeError):      # not listening yet / nothing printed yet
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert "<html" in page.lower() and "trame" in page.lower(), page[:500]
        assert proc.poll() is None
    finally:
        family = [proc]
        try:
            family = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
        except psutil.NoSuchProcess:
            pass
        for p in family:
            try:
                p.kill()
            except (psutil.NoSuchProcess, AttributeError):
                pass
        proc.wait(timeout=30)
