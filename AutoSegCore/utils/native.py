"""Build a small C source once per machine and load it with ``ctypes`` — the plumbing shared by the optional
compiled kernels (``proxy/_native.py``: MI / local NCC; ``training/fused_loss.py``: Dice + CE).

The library is compiled with the system C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``) and ``-march=native``
(falling back to a portable build) into a cache dir keyed by the source, the CPU's instruction set and the
platform, so a shared home directory never serves one machine's binary to another.  ``AUTOSEG_NATIVE=0`` turns
every compiled kernel off; callers then use their torch path.  ctypes releases the GIL during each call.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno", "-fopenmp-simd")


def enabled() -> bool:
    return os.environ.get("AUTOSEG_NATIVE", "1").lower() not in ("0", "false", "no", "off")


def default_cache_dir() -> Path:
    root = os.environ.get("AUTOSEG_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / ("native" if os.environ.get("AUTOSEG_CACHE") else "autoseg/native")


def cpu_key() -> str:
    """Compiled with -march=native, so the binary is only valid for this CPU's instruction set."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return flags or platform.processor() or platform.machine()


def library_path(stem: str, source: str, cache_dir: Path) -> Path:
    key = hashlib.sha256((source + cpu_key() + platform.platform()).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{stem}_{key}.so"


def compile_library(stem: str, source: str, target: Path) -> None:
    """Compile ``source`` into ``target`` atomically (a failed build leaves nothing behind)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / f"{stem}.c"
        src.write_text(source)
        out = Path(tmp) / target.name
        cmd = [cc, *FLAGS, str(src), "-o", str(out), "-lm"]
        res = subprocess.run(cmd[:2] + ["-march=native"] + cmd[2:], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:           # a compiler without -march=native still gets a portable build
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[:300]}")
        os.replace(out, target)


def build_and_load(stem: str, source: str, cache_dir: str | Path | None = None) -> ctypes.CDLL:
    """The compiled library, building it on first use; raises OSError/RuntimeError when that fails."""
    path = library_path(stem, source, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if not path.exists():
        compile_library(stem, source, path)
    return ctypes.CDLL(str(path))


class NativeLibrary:
    """One C source, built on first use and loaded once per process (thread-safe).

    ``declare(lib)`` sets the functions' ctypes signatures.  ``load()`` returns ``None`` when
    ``AUTOSEG_NATIVE=0`` or the build failed; ``build_error`` then says why."""

    def __init__(self, stem: str, source: str, declare: Callable[[ctypes.CDLL], None]) -> None:
        self.stem, self.source, self.declare = stem, source, declare
        self.lib: ctypes.CDLL | None = None
        self.tried = False
        self.build_error: str | None = None
        self._lock = threading.Lock()

    def load(self, cache_dir: str | Path | None = None) -> ctypes.CDLL | None:
        if not enabled():
            return None
        if self.tried:                    # the hot path (the fused loss asks every step): no lock once settled
            return self.lib
        with self._lock:
            if self.tried:
                return self.lib
            self.tried = True
            try:
                lib = build_and_load(self.stem, self.source, cache_dir)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                self.build_error = str(exc)
                return None
            self.declare(lib)
            self.lib = lib
            return lib
