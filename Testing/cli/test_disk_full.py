"""A full disk is one line and exit 2, naming the file, and leaves nothing half-written: the real write paths
(nibabel, SimpleITK, torch.save) hit a real EFBIG (RLIMIT_FSIZE in a child, SIGXFSZ ignored) or, where this user
may mount one, a real ENOSPC on a tiny tmpfs."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from outputkit import env, train_tiny_model

LIMIT = 8192            # bytes: above a lock record, below one predicted case's label map (≈ 16 KB here)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("full-model"))


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # the write fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 12 KiB tmpfs (three pages): needs root (mount), skipped otherwise."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _predict(model: Path, image: Path, out: Path, *extra: str, limit: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", "predict", model, image, "--out", out, *extra],
                          capture_output=True, text=True, timeout=600, env=env(),
                          preexec_fn=_file_size_limit if limit else None)


def _one_line_error(r: subprocess.CompletedProcess, target: Path, reason: str) -> None:
    """The last two lines are the error and its hint (the progress log lines before them go to stderr too)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[-2] == f"autoseg predict: error: {target}: {reason}" and lines[-1].startswith("  hint: "), lines
    assert sum(line.startswith("autoseg predict: error:") for line in lines) == 1, lines


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])         # nibabel's OSError; SimpleITK's RuntimeError
def test_a_file_size_limit_is_one_line_and_leaves_no_partial_file(tiny, tmp_path, fmt):
    model, data = tiny
    image = sorted((data / "imagesTr").iterdir())[0]
    case = image.name[:-len(".nii.gz")]
    out = tmp_path / "P"
    out.mkdir()                                                  # kept (a folder this run made would be removed)
    r = _predict(model, image, out, "--format", fmt, limit=True)
    _one_line_error(r, out / f"{case}{'.nii.gz' if fmt == 'nifti' else '.nrrd'}", os.strerror(27))
    assert "file-size limit" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == []           # no temp file, no half case, no lock left


def test_a_full_tmpfs_is_one_line_and_leaves_no_partial_file(tiny, tiny_tmpfs):
    model, data = tiny
    image = sorted((data / "imagesTr").iterdir())[0]
    out = tiny_tmpfs / "P"
    out.mkdir()
    r = _predict(model, image, out, limit=False)
    _one_line_error(r, out / image.name, "No space left on device")
    assert "the disk is full" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == []           # no temp file, no half case, no lock left


def test_torch_save_and_simpleitk_through_atomic_path_report_the_full_disk(tmp_path):
    """torch.save says only ``unexpected pos``: atomic_path asks the file system and names the target."""
    script = textwrap.dedent(f"""
        import os, numpy as np, SimpleITK as sitk, torch
        from AutoSegCore.utils.io import atomic_path
        for name, write in [("model.pt", lambda p: torch.save({{"w": torch.zeros(100_000)}}, p)),
                            ("image.nrrd", lambda p: sitk.WriteImage(sitk.GetImageFromArray(
                                np.random.rand(40, 40, 40).astype("float32")), str(p), useCompression=True))]:
            try:
                with atomic_path({str(tmp_path)!r} + "/" + name) as tmp:
                    write(tmp)
            except OSError as exc:
                print(exc.errno, exc.filename)
        print(sorted(os.listdir({str(tmp_path)!r})))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env(),
                       preexec_fn=_file_size_limit)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines() == [f"27 {tmp_path / 'model.pt'}", f"27 {tmp_path / 'image.nrrd'}", "[]"]
