"""``--private`` outputs are the user's only (0700 folders, 0600 files) on real runs; without it they follow the
umask, which the engine never changes; compiled helpers are loaded only from a folder nobody else can write."""
from __future__ import annotations

import ctypes
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from outputkit import LOCK, autoseg, env, train_tiny_model
from shared_data import REPO

from AutoSegCore.utils import native


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("private-model"))


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *sorted(root.rglob("*"))]}


def test_predict_private_writes_0600_files_in_a_0700_folder(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "P"
    r = autoseg("predict", model, *sorted((data / "imagesTr").iterdir())[:2], "--out", out, "--private")
    assert r.returncode == 0, r.stderr[-3000:]
    modes = _modes(out)
    assert len(modes) == 5 and LOCK not in modes, modes                    # 2 cases × 2 files, and the folder
    assert modes == {k: 0o700 if k == "." else 0o600 for k in modes}, {k: oct(v) for k, v in modes.items()}


def test_train_private_makes_the_whole_model_folder_private(tiny, tmp_path):
    _, data = tiny
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"network": {"depth": 3, "channels": 8, "n_convs": 1},
                                   "training": {"batch_size": 2, "warmup_steps": 1}}))
    out = tmp_path / "M"
    r = autoseg("train", data, "--config", cfg, "--no-plan", "--epochs", "1", "--steps-per-epoch", "1",
                "--val-fraction", "0", "--out", out, "--private")
    assert r.returncode == 0, r.stderr[-3000:]
    modes = _modes(out)
    assert "model.pt" in modes and "model.json" in modes, modes
    wrong = {k: oct(v) for k, v in modes.items() if v != (0o700 if (out / k).is_dir() else 0o600)}
    assert not wrong, wrong


def test_without_private_outputs_follow_the_umask(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "P"
    r = subprocess.run([sys.executable, "-m", "AutoSegCore", "predict", model,
                        sorted((data / "imagesTr").iterdir())[0], "--out", out], capture_output=True, text=True,
                       timeout=600, env=env(), cwd=REPO, preexec_fn=lambda: os.umask(0o027))
    assert r.returncode == 0, r.stderr[-3000:]
    modes = _modes(out)
    assert modes == {k: 0o750 if k == "." else 0o640 for k in modes}, {k: oct(v) for k, v in modes.items()}


def test_the_engine_never_changes_the_process_umask():
    """os.umask is process-wide (every thread of Slicer or the web server): a read-by-setting window would let
    another thread create a world-writable file."""
    calls = [f"{p.relative_to(REPO)}:{n}" for root in ("AutoSegCore", "AutoSegWeb", "AutoSegSearch")
             for p in (REPO / root).rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\bumask\(", line)]
    assert calls == []


SOURCE = "int answer(void) { return 42; }\n"
PLANTED = ("#include <stdio.h>\n#include <stdlib.h>\n"
           "__attribute__((constructor)) static void planted(void) { FILE *f = fopen(getenv(\"PLANTED_MARKER\"), "
           "\"w\"); if (f) fclose(f); }\nint answer(void) { return 666; }\n")


def _plant(cache: Path, marker: Path, monkeypatch) -> Path:
    """A library with a constructor (code that runs on load) at the exact path the real one is cached under."""
    monkeypatch.setenv("PLANTED_MARKER", str(marker))
    target = native.library_path("answer", SOURCE, cache)
    native.compile_library("planted", PLANTED, target)
    return target


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_a_library_in_a_group_writable_cache_is_not_loaded(tmp_path, monkeypatch):
    cache, marker = tmp_path / "cache", tmp_path / "ran"
    cache.mkdir()
    planted = _plant(cache, marker, monkeypatch)
    os.chmod(cache, 0o775)                              # a group member could have put it there
    with pytest.warns(RuntimeWarning, match="others could write"):
        lib = native.build_and_load("answer", SOURCE, cache)
    lib.answer.restype = ctypes.c_int
    assert lib.answer() == 42 and not marker.exists()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and native.trusted(planted)      # rebuilt in place


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
def test_a_library_file_others_can_write_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    cache, marker = tmp_path / "cache", tmp_path / "ran"
    cache.mkdir(mode=0o700)
    planted = _plant(cache, marker, monkeypatch)
    os.chmod(planted, 0o777)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # the folder is fine: no warning, just a rebuild
        lib = native.build_and_load("answer", SOURCE, cache)
    lib.answer.restype = ctypes.c_int
    assert lib.answer() == 42 and not marker.exists() and stat.S_IMODE(planted.stat().st_mode) == 0o755


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_a_cache_folder_of_another_user_is_not_used(tmp_path, monkeypatch):
    cache, marker = tmp_path / "cache", tmp_path / "ran"
    cache.mkdir(mode=0o755)
    _plant(cache, marker, monkeypatch)
    os.chown(cache, 65534, 65534)                       # nobody's folder: their library, not ours
    monkeypatch.setattr(native, "_fallback_dir", None)
    with pytest.warns(RuntimeWarning, match="not yours"):
        lib = native.build_and_load("answer", SOURCE, cache)
    lib.answer.restype = ctypes.c_int
    assert lib.answer() == 42 and not marker.exists()
    assert native._fallback_dir is not None and stat.S_IMODE(native._fallback_dir.stat().st_mode) == 0o700
