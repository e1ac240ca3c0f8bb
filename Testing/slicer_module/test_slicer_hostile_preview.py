"""A hostile case file in the proxy-data preview (the Slicer panel and the web page both call PanelLogic.load_case,
which reads in their own process): an error from the engine's header check, not a dead Slicer or web server.

Run in a child process with real MRML (slicer-core) so its time and peak memory are its own.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from shared_data import HIPPO, REPO, copy_msd_subset

CASE = "hippocampus_003"


def _nifti_header(shape, dtype) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4


def _gzip_bomb(path: Path, n: int = 640) -> None:
    """640³ uint8 zeros at nibabel's gzip level: 1.1 MB on disk, 262 MB of voxels."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts, chunk = [c.compress(_nifti_header((n, n, n), np.uint8))], bytes(n * n)
    parts += [c.compress(chunk) for _ in range(n)]
    path.write_bytes(b"".join(parts + [c.flush()]))


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
from AutoSegSearchLib.headless import make_headless_app
from AutoSegSearchLib.logic import PanelLogic
import AutoSegCore.data.volumes            # imported by the first preview; its import time is not the refusal's
scene, app_logic = make_headless_app()
logic = PanelLogic(scene, app_logic=app_logic)
before, nodes = peak_mb(), scene.GetNumberOfNodes()
start = time.perf_counter()
try:
    logic.importer.load_case(sys.argv[2], sys.argv[3])
    message = None
except Exception as exc:
    message = f"{type(exc).__name__}: {exc}"
print(json.dumps({"seconds": time.perf_counter() - start, "message": message, "grew_mb": peak_mb() - before,
                  "nodes_added": scene.GetNumberOfNodes() - nodes}))
"""


@pytest.mark.parametrize("kind, expected", [("imagesTr", "decompression bomb"), ("labelsTr", "over the limit of")],
                         ids=["bomb_image", "crafted_label"])
def test_a_hostile_case_is_an_error_in_the_preview_not_a_dead_process(tmp_path, kind, expected):
    data = copy_msd_subset(tmp_path / "ds", 2, HIPPO)
    target = data / kind / f"{CASE}.nii.gz"
    if kind == "imagesTr":
        _gzip_bomb(target)
    else:
        target.write_bytes(gzip.compress(_nifti_header((32767, 32767, 32767), np.uint8)))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "AutoSegSearch"), str(data), CASE],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkOSOpenGLRenderWindow"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["message"] and got["message"].startswith("DatasetError: ") and expected in got["message"], got
    assert str(target) in got["message"] and got["nodes_added"] == 0, got
    assert got["seconds"] < 1.0 and got["grew_mb"] < 100, got
