"""Size limits checked on a volume's header, before any voxel is read: a hostile or broken file is a one-line
``DatasetError``, not a ``MemoryError`` or a dead Slicer / web server.

Two rules, applied by ``volumes.read_header`` to every format (NIfTI, NRRD, MetaImage, DICOM series, ``.seg.nrrd``):

* **Memory.** The bytes a volume takes once read — the file's voxels plus the float32 copy ``read_image`` makes
  (label maps become uint8/int16, a ``.seg.nrrd``'s layers one uint16 map: no more) — must fit a limit:
  ``AUTOSEG_MAX_IMAGE_GB`` when set, else half of the memory available now (the smaller of what the system and
  this process's cgroup leave).  A 66-byte ``.nii.gz`` claiming 32767³ float32 voxels (281 TB) stops here.

* **Decompression bombs** (images only).  A compressed image whose voxels take over ``MAX_COMPRESSION`` times
  the bytes of the files holding them, and over ``COMPRESSION_FLOOR`` bytes, is refused: a 1 MB ``.nii.gz`` of
  640³ zeros (262 MB uint8, 1 GB float32) cost 3.1 GB and 15 s before.  Measured on every file of the shared
  datasets (Hippocampus, Prostate, Spleen, BRATS, spinal cord, TotalSegmentator CT and MR; 223 images, 223 label
  maps): images compress 1.2–15.7× (MR/CT 1.2–3.5×, skull-stripped BRATS 10.7–15.7×), label maps 10–173×.
  Deflate itself stops at ~1030× (zeros at level 6–9; 229× at level 1, nibabel's default), and a nearly empty
  label map reaches that too (a 20×20×10 blob in 512²×300: 1019×), so label maps are not judged by their ratio,
  only by the memory rule; images get ``MAX_COMPRESSION`` = 100×, over 6× the largest measured, below the 229×
  of zeros at any level.  A bomb below it is bounded by the memory rule.  ``AUTOSEG_MAX_COMPRESSION`` changes it.

Why hand-written: nibabel, SimpleITK and GDCM allocate whatever a header asks for; none offers a budget.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from AutoSegCore.errors import DatasetError
from AutoSegCore.utils.env import env_number

MAX_IMAGE_ENV = "AUTOSEG_MAX_IMAGE_GB"
MAX_COMPRESSION_ENV = "AUTOSEG_MAX_COMPRESSION"
MEMORY_SHARE = 0.5                  # of the memory available when the header is read
MAX_COMPRESSION = 100.0             # images: voxel bytes / stored bytes (measured 1.2–15.7×, see above)
COMPRESSION_FLOOR = 32 * 2 ** 20    # below this many voxel bytes, any compression ratio is harmless
HELD_BYTES_PER_VOXEL = 4            # the float32 copy of an image (label maps: uint8/int16/uint16, less)
_GB = 1e9
_AVAILABLE = [float("-inf"), 0]     # (when, bytes) of the last look at available memory


def available_memory() -> int:
    """Bytes this process can still get: the system's available memory, capped by its cgroup's headroom (a
    container's ``memory.max``, less what it uses beyond reclaimable page cache), where one is set.  Past either, a
    read is killed, not refused.  (``RLIMIT_AS``, e.g. ``--trial-memory-gb``, is not counted: past it an allocation
    fails with a MemoryError, which is already one line.)"""
    import psutil

    now = time.monotonic()
    if now - _AVAILABLE[0] < 1.0:                 # a dataset's headers in a row: ask once a second, not per file
        return _AVAILABLE[1]
    avail = int(psutil.virtual_memory().available)
    group = Path("/sys/fs/cgroup")
    try:
        most = (group / "memory.max").read_text().strip()
        if most.isdigit():
            used = int((group / "memory.current").read_text().strip())
            stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines() if " " in line)
            avail = min(avail, max(0, int(most) - used + int(stat.get("inactive_file", 0))))
    except (OSError, ValueError):
        pass
    _AVAILABLE[:] = [now, avail]
    return avail


def image_limit() -> tuple[int, str]:
    """(bytes one volume may take in memory, how that limit was set — for the error message)."""
    gigabytes = env_number(MAX_IMAGE_ENV, f"e.g. {MAX_IMAGE_ENV}=8, or unset it")
    if gigabytes is not None:
        return int(gigabytes * _GB), f"{MAX_IMAGE_ENV}={gigabytes:g}"
    avail = available_memory()
    return int(MEMORY_SHARE * avail), f"half of the {avail / _GB:.1f} GB available now"


def held_bytes(shape, raw_bytes: int) -> int:
    """Bytes a volume takes once read: the file's voxels plus one float32 copy."""
    return int(raw_bytes) + HELD_BYTES_PER_VOXEL * math.prod(int(s) for s in shape)


def stored_size(path: Path, fmt: str, data_file: str | None = None) -> int | None:
    """Bytes of the file(s) holding a volume's voxels: the file itself, plus the one data file a detached header
    names (.nhdr: ``data_file`` from its fields; .mhd: ``ElementDataFile``, read here — ITK reads it but does not
    say); None for a list or pattern of data files."""
    size = path.stat().st_size
    value = data_file
    if fmt == "metaimage":
        with open(path, "rb") as f:
            head = f.read(65536)
        for raw in head.split(b"\n"):
            key, _, text = raw.decode("latin-1").partition("=")
            if key.strip().lower() == "elementdatafile":
                value = text.strip()
                break
    if not value or str(value).upper() == "LOCAL":
        return size
    value = str(value)
    if value.upper().startswith("LIST") or "%" in value or " " in value:
        return None
    data = Path(value) if Path(value).is_absolute() else path.parent / value
    return size + data.stat().st_size if data.is_file() else None


def _size(n: float) -> str:
    for unit, scale in (("GB", _GB), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def check_volume(path, shape, dtype, raw_bytes: int, stored_bytes: int | None, role: str | None = None) -> None:
    """Refuse a volume before its voxels are read: over the memory limit (any role), or compressed beyond what a
    scan can be (``role="image"``).  ``raw_bytes``: its voxels as stored (decompressed); ``stored_bytes``: the
    bytes of the file(s) holding them (None when unknown)."""
    need = held_bytes(shape, raw_bytes)
    limit, how = image_limit()
    if need > limit:
        dims = "×".join(str(int(s)) for s in shape)
        raise DatasetError(f"{path}: header asks for {dims} {np.dtype(dtype).name} voxels, {_size(need)} in memory "
                           f"once read, over the limit of {_size(limit)} ({how})",
                           f"a damaged or hostile header, or a volume too big for this machine: check the file, "
                           f"crop or resample it, free memory, or raise the limit with {MAX_IMAGE_ENV}=N (GB)")
    if role != "image" or not stored_bytes or raw_bytes <= COMPRESSION_FLOOR:
        return
    most = env_number(MAX_COMPRESSION_ENV, f"e.g. {MAX_COMPRESSION_ENV}=200, or unset it") or MAX_COMPRESSION
    ratio = raw_bytes / stored_bytes
    if ratio > most:
        raise DatasetError(f"{path}: {_size(stored_bytes)} on disk unpack to {_size(raw_bytes)} of voxels "
                           f"({ratio:.0f}× compressed; scans compress at most ~16×, the limit is {most:g}×): a "
                           "decompression bomb or an almost blank image",
                           f"re-export the image; if it is real, allow it with {MAX_COMPRESSION_ENV}={math.ceil(ratio)}")
