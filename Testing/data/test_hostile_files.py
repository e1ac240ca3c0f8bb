"""Hostile and broken volume files (issue 30, items 4 and 7): refused from the header, before a voxel is read.

Every hostile file is made here, in tmp_path, the way an attacker would: a 66-byte ``.nii.gz`` whose header claims
32767³ float32, a gzip bomb (640³ zeros, 1.1 MB), crafted NRRD / MetaImage headers.  Time and peak memory are
measured in a child process (``ru_maxrss``) so nothing the test runner holds counts.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from datakit import make_msd_copy
from formatkit import convert_msd, dicom_series, seg_nrrd_label, sitk_copy
from shared_data import DATA_ROOT, HIPPO, REPO
from test_malformed import _assert_clean_error, _cli

from AutoSegCore.data import limits
from AutoSegCore.data.dataset import load_dataset
from AutoSegCore.data.volumes import IO_STATS, read_header, read_image
from AutoSegCore.errors import ConfigError, DatasetError

CASE = "hippocampus_003"           # the first case of make_msd_copy / convert_msd


# --------------------------------------------------------------------------------------------- hostile files

def _nifti_header(shape, dtype) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    hdr.set_zooms((1.0,) * len(shape))
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0" * 4


def crafted_nifti(path: Path, shape=(32767, 32767, 32767), dtype=np.float32) -> Path:
    """A header and no voxels: 65 bytes gzipped."""
    path.write_bytes(gzip.compress(_nifti_header(shape, dtype), 9))
    return path


def _zeros_stream(nbytes: int, compressor) -> list[bytes]:
    chunk, out = bytes(16 << 20), []
    while nbytes > 0:
        out.append(compressor.compress(chunk[:min(nbytes, len(chunk))]))
        nbytes -= len(chunk)
    return out + [compressor.flush()]


def gzip_bomb(path: Path, shape=(640, 640, 640), dtype=np.uint8, level: int = 1) -> Path:
    """A valid .nii.gz of zeros: level 1 (nibabel's own) packs 640³ uint8 (262 MB) into 1.1 MB, 229×."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    head = c.compress(_nifti_header(shape, dtype))
    path.write_bytes(b"".join([head] + _zeros_stream(int(np.prod(shape)) * np.dtype(dtype).itemsize, c)))
    return path


def crafted_nrrd(path: Path, sizes=(32767, 32767, 32767), bomb: bool = False) -> Path:
    """An NRRD with gzip encoding: a header claiming ``sizes`` uint8 voxels and a gzip stream of zeros — all of them
    (``bomb``) or a few bytes."""
    head = ("NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\n"
            f"sizes: {' '.join(map(str, sizes))}\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain "
            "domain\nendian: little\nencoding: gzip\nspace origin: (0,0,0)\n\n").encode()
    n = int(np.prod(sizes)) if bomb else 16
    path.write_bytes(head + b"".join(_zeros_stream(n, zlib.compressobj(6, zlib.DEFLATED, 31))))
    return path


def crafted_metaimage(path: Path, sizes=(32767, 32767, 32767), bomb: bool = False) -> Path:
    """A MetaImage with compressed data (zlib), as ``crafted_nrrd``."""
    n = int(np.prod(sizes)) if bomb else 16
    data = b"".join(_zeros_stream(n, zlib.compressobj(6, zlib.DEFLATED, 15)))
    head = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = True\n"
            f"CompressedDataSize = {len(data)}\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
            f"ElementSpacing = 1 1 1\nDimSize = {' '.join(map(str, sizes))}\nElementType = MET_UCHAR\n"
            "ElementDataFile = LOCAL\n").encode()
    path.write_bytes(head + data)
    return path


# the peak RSS of the child's own address space: VmHWM (ru_maxrss would keep the test runner's across the exec)
PEAK = r"""
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
"""
CHILD = PEAK + r"""
import json, sys, time
from AutoSegCore.data.dataset import load_dataset
from AutoSegCore.errors import AutoSegError
start = time.perf_counter()
try:
    load_dataset(sys.argv[1], deep=True, min_cases=2)
    message = None
except AutoSegError as exc:
    message = str(exc)
print(json.dumps({"seconds": time.perf_counter() - start, "message": message, "peak_mb": peak_mb()}))
"""


def _measured(script: str, *args, env=None) -> dict:
    """Run ``script`` in a fresh Python (the engine as installed) and return the JSON it prints."""
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hostile_dataset(root: Path, kind: str, make) -> Path:
    data = make_msd_copy(root, n=2)
    make(data / f"{kind}Tr" / f"{CASE}.nii.gz")
    return data


HOSTILE = {
    "crafted_header": ("images", crafted_nifti, "header asks for 32767×32767×32767 float32 voxels"),
    "gzip_bomb": ("images", gzip_bomb, "decompression bomb"),
    "gzip_bomb_float32": ("images", lambda p: gzip_bomb(p, (400, 400, 400), np.float32, 9), "decompression bomb"),
    "crafted_label": ("labels", lambda p: crafted_nifti(p, dtype=np.uint8), "over the limit of"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_files_are_refused_in_under_a_second_and_200_mb(tmp_path, name):
    kind, make, expected = HOSTILE[name]
    data = _hostile_dataset(tmp_path / "ds", kind, make)
    target = data / f"{kind}Tr" / f"{CASE}.nii.gz"
    assert target.stat().st_size < 1_200_000
    got = _measured(CHILD, data)
    assert got["message"] and str(target) in got["message"] and expected in got["message"], got
    assert got["seconds"] < 1.0 and got["peak_mb"] < 200, got
    for extra in (["--shallow"], []):
        _assert_clean_error(_cli("validate", str(data), *extra), "validate", expected)


def test_a_sparse_label_map_is_judged_by_memory_not_by_its_compression(tmp_path):
    """Label maps compress like zeros (measured up to 173×; a small blob in a big volume ~1000×): as a label the
    file is read, the same file given as an image is refused as a bomb."""
    labels = np.zeros((512, 512, 160), np.uint8)
    labels[200:230, 240:260, 70:80] = 1
    path = tmp_path / "sparse.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    header = read_header(path, role="label")
    assert header.raw_bytes / header.stored_bytes > limits.MAX_COMPRESSION
    assert read_header(path).shape == labels.shape                  # no role: the memory rule only
    with pytest.raises(DatasetError, match="decompression bomb"):
        read_header(path, role="image")


def test_every_shared_volume_passes_with_a_wide_margin():
    """The thresholds' evidence: every image and label of every shared dataset passes the header checks, and no
    image comes within 5× of the compression limit (measured: 1.2–15.7×)."""
    ratios = []
    for folder in sorted(p for p in DATA_ROOT.iterdir() if (p / "dataset.json").is_file()):
        ds = load_dataset(folder, deep=False, min_cases=1)
        for case in ds.cases:
            for image in case.images:
                h = read_header(image, role="image")
                ratios.append(h.raw_bytes / h.stored_bytes)
            if case.label is not None:
                read_header(case.label, role="label")
    assert len(ratios) > 200 and max(ratios) < limits.MAX_COMPRESSION / 5, max(ratios)


# --------------------------------------------------------------------------------------------- every format

@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    """One Hippocampus case in every supported format (35×51×35: 0.49 MB held as float32 beside its float32)."""
    t = tmp_path_factory.mktemp("formats")
    image, label = HIPPO / "imagesTr" / f"{CASE}.nii.gz", HIPPO / "labelsTr" / f"{CASE}.nii.gz"
    out = {ending: sitk_copy(image, t / f"h{ending}") for ending in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha",
                                                                      ".mhd")}
    out[".seg.nrrd"] = seg_nrrd_label(label, t / "h.seg.nrrd", {1: "Anterior", 2: "Posterior"})
    dicom_series(image, t / "dicom")
    out["dicom"] = t / "dicom"
    return out


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", "dicom"])
def test_every_format_refuses_a_volume_over_the_limit_before_reading_it(formats, monkeypatch, ending):
    path = formats[ending]
    header = read_header(path, role="image")                          # the default limit: fine
    assert header.raw_bytes > 0 and header.stored_bytes >= (path.stat().st_size if path.is_file() else 1)
    if ending in (".nhdr", ".mhd"):
        assert header.stored_bytes > path.stat().st_size              # the detached data file is counted
    monkeypatch.setenv(limits.MAX_IMAGE_ENV, "0.0002")                # 200 kB
    reads = IO_STATS["data_reads"]
    with pytest.raises(DatasetError) as info:
        read_image(path) if ending != ".seg.nrrd" else read_header(path, role="label")
    assert "over the limit of 200 kB (AUTOSEG_MAX_IMAGE_GB=0.0002)" in info.value.message
    assert str(path) in info.value.message and "\n" not in str(info.value)
    assert IO_STATS["data_reads"] == reads


def test_a_bad_limit_setting_is_a_config_error(monkeypatch, formats):
    monkeypatch.setenv(limits.MAX_IMAGE_ENV, "lots")
    with pytest.raises(ConfigError, match="AUTOSEG_MAX_IMAGE_GB=lots must be a positive number"):
        read_header(formats[".nii.gz"])


@pytest.mark.parametrize("make, expected", [
    (lambda p: crafted_nrrd(p / "x.nrrd"), "header asks for 32767×32767×32767 uint8"),
    (lambda p: crafted_metaimage(p / "x.mha"), "header asks for 32767×32767×32767 uint8"),
    (lambda p: crafted_nrrd(p / "x.nrrd", (400, 400, 400), bomb=True), "decompression bomb"),
    (lambda p: crafted_metaimage(p / "x.mha", (400, 400, 400), bomb=True), "decompression bomb"),
], ids=["nrrd_header", "metaimage_header", "nrrd_gzip_bomb", "metaimage_zlib_bomb"])
def test_crafted_nrrd_and_metaimage_are_refused_from_the_header(tmp_path, make, expected):
    path = make(tmp_path)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=re.escape(expected)):
        read_image(path)
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------------------- zero or non-finite voxel size

def _edit_header(path: Path, pattern: str, repl: str) -> None:
    """Replace ``pattern`` in the text header of an NRRD / MetaImage file (the voxels after it untouched)."""
    data = path.read_bytes()
    end = data.index(b"\n\n") + 1 if path.suffix == ".nrrd" else data.index(b"ElementDataFile")
    head, n = re.subn(pattern.encode(), repl.encode(), data[:end], count=1)
    assert n == 1, data[:end]
    path.write_bytes(head + data[end:])


VOXEL_SIZE = {
    "nrrd_zero": (".nrrd", r"\([^()]*\)\n", "(0,0,0)\n", "is zero or not a number"),
    "nrrd_none": (".nrrd", r"\([^()]*\)\n", "none\n", "gives no voxel size for 1 of the 3 axes"),
    "nrrd_nan": (".nrrd", r"\([^()]*\)\n", "(nan,nan,nan)\n", "gives no voxel size for 1 of the 3 axes"),
    "mha_zero": (".mha", r"ElementSpacing = (\S+) (\S+) \S+", r"ElementSpacing = \1 \2 0", "is zero or not a number"),
    "mha_nan": (".mha", r"ElementSpacing = (\S+) (\S+) \S+", r"ElementSpacing = \1 \2 nan", "is zero or not a number"),
    "mha_negative": (".mha", r"ElementSpacing = \S+", "ElementSpacing = -1", "is zero or not a number"),
}


@pytest.mark.parametrize("name", list(VOXEL_SIZE))
def test_a_zero_or_missing_voxel_size_is_refused_in_nrrd_and_metaimage(tmp_path, name):
    """ITK reads a none/NaN space direction or NaN spacing as 1 mm, silently; a zero one became NaN geometry."""
    ending, pattern, repl, expected = VOXEL_SIZE[name]
    data = convert_msd(tmp_path / "ds", 3, image_ending=ending, label_ending=ending)
    _edit_header(data / "imagesTr" / f"{CASE}{ending}", pattern, repl)
    with pytest.raises(DatasetError) as info:
        load_dataset(data, min_cases=2)
    assert f"{CASE}{ending}" in info.value.message and expected in info.value.message
    _assert_clean_error(_cli("validate", str(data)), "validate", expected)


@pytest.mark.parametrize("spacing", [["0", "0"], ["nan", "1"], ["-1", "1"]], ids=["zero", "nan", "negative"])
def test_a_dicom_series_with_a_meaningless_pixel_spacing_is_refused(formats, tmp_path, spacing):
    """GDCM reads all three as 1×1 mm."""
    import warnings

    import pydicom

    folder = tmp_path / "series"
    shutil.copytree(formats["dicom"], folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # pydicom warns that 'nan' is no DS value: that is the point
        for f in folder.iterdir():
            ds = pydicom.dcmread(f)
            ds.PixelSpacing = spacing
            ds.save_as(f)
    with pytest.raises(DatasetError, match=r"Pixel Spacing \(0028,0030\) .* is not two positive sizes in mm"):
        read_header(folder)


# ------------------------------------------------------------------------------------------------ MemoryError

def test_a_memory_error_is_one_line_and_exit_2(tmp_path):
    """A 1024³ case allowed by the settings but not by the process's address space (RLIMIT_AS 2 GB): the read
    fails with MemoryError, which `autoseg` turns into one line."""
    data = make_msd_copy(tmp_path / "ds", n=2)
    crafted_nifti(data / "imagesTr" / f"{CASE}.nii.gz", (1024, 1024, 1024))
    crafted_nifti(data / "labelsTr" / f"{CASE}.nii.gz", (1024, 1024, 1024), np.uint8)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "AutoSegCore", "validate", str(data)], capture_output=True,
                          text=True, timeout=120, preexec_fn=cap,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", limits.MAX_IMAGE_ENV: "1000",
                               limits.MAX_COMPRESSION_ENV: "1e12"})
    _assert_clean_error(proc, "validate", "out of memory")
    assert "AUTOSEG_MAX_IMAGE_GB" in proc.stderr


# ---------------------------------------------------------------------------------- model.json on the meta device

def _model_folder(folder: Path, in_channels: int = 1) -> Path:
    import torch

    from AutoSegCore.networks import build_network
    from AutoSegCore.training.model_io import save_model

    net_cfg = {"depth": 3, "channels": 8, "n_convs": 1}
    torch.manual_seed(0)
    net = build_network(net_cfg, in_channels, 3)
    info = {"format": "autoseg-model/1", "config": {"network": net_cfg}, "labels": {"0": "background", "1": "a",
                                                                                      "2": "b"},
            "in_channels": in_channels, "out_channels": 3, "patch_size": [16, 16, 16], "preprocessor": {}}
    save_model(folder, net, info)
    return folder


def _set_info(folder: Path, **values) -> None:
    info = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**info, **values}))


LOAD_CHILD = PEAK + r"""
import json, sys, time
import torch
import AutoSegCore.networks.build
from AutoSegCore.training.model_io import load_model
from AutoSegCore.errors import AutoSegError
torch.set_num_threads(1)
results = []
for folder in sys.argv[1:]:
    before = peak_mb()
    start = time.perf_counter()
    try:
        load_model(folder)
        message = None
    except AutoSegError as exc:
        message = str(exc)
    results.append({"seconds": time.perf_counter() - start, "message": message, "grew_mb": peak_mb() - before})
print(json.dumps(results))
"""


def test_a_model_folder_loads_through_the_meta_device_unchanged(tmp_path):
    import torch

    from AutoSegCore.training.model_io import load_model

    folder = _model_folder(tmp_path / "m")
    net, _ = load_model(folder)
    saved = torch.load(folder / "model.pt", weights_only=True)
    assert not any(t.is_meta for t in list(net.parameters()) + list(net.buffers()))
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters()) and not net.training


def test_a_model_json_asking_for_huge_channels_allocates_nothing(tmp_path):
    """10⁶ input channels: built for real its first convolution alone would be 1.7 GB; on the meta device the
    weights' shapes are compared first.  10⁹: over the memory limit, refused before model.pt (junk here) is read."""
    million = _model_folder(tmp_path / "million")
    _set_info(million, in_channels=10 ** 6)
    billion = _model_folder(tmp_path / "billion")
    _set_info(billion, in_channels=10 ** 9)                     # 2·10¹¹ weights in the first convolution
    (billion / "model.pt").write_bytes(b"junk: never read")
    proc = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(million), str(billion)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    first, second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert first["message"] and "model.pt does not fit the network described in model.json" in first["message"]
    assert "(8, 1, 3, 3, 3) in the file, (8, 1000000, 3, 3, 3) in the network" in first["message"], first
    assert second["message"] and "model.json describes a network of 432,000,035,017 weights" in second["message"]
    assert "over the memory limit" in second["message"], second
    for got in (first, second):
        assert got["seconds"] < 2.0 and got["grew_mb"] < 100, got
