"""Build a small C source once per machine and load it with ``ctypes`` — the plumbing shared by the optional
compiled kernels (``proxy/_native.py``: MI / local NCC; ``training/fused_loss.py``: Dice + CE).

The library is compiled with the system C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``) and ``-march=native``
(falling back to a portable build) into a cache dir keyed by the source, the CPU's instruction set and the
platform, so a shared home directory never serves one machine's binary to another.  ``AUTOSEG_NATIVE=0`` turns
every compiled kernel off; callers then use their torch path.  ctypes releases the GIL during each call.

Loading a library runs its code, so one is loaded only from a folder owned by this user that nobody else can write
(and only a file of this user's that nobody else can write; it is rebuilt otherwise): a cache folder that fails the
check — shared through ``AUTOSEG_CACHE``, or left group-writable — is not used, and the library is built into a new
private folder for this process instead, with a warning.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
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
        os.chmod(out, 0o755)              # a umask of 002 would leave it group-writable, see trusted()
        os.replace(out, target)


def build_and_load(stem: str, source: str, cache_dir: str | Path | None = None) -> ctypes.CDLL:
    """The compiled library, building it on first use; raises OSError/RuntimeError when that fails."""
    path = library_path(stem, source, private_cache_dir(Path(cache_dir) if cache_dir is not None
                                                        else default_cache_dir()))
    if not trusted(path):                 # missing, or a file another user owns or can write: (re)build it
        compile_library(stem, source, path)
    return ctypes.CDLL(str(path))


def trusted(path: Path) -> bool:
    """``path`` exists, is no symbolic link, is this user's and nobody else can write it (POSIX; elsewhere: exists)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not hasattr(os, "getuid"):
        return True
    return not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


_fallback_dir: Path | None = None


def private_cache_dir(cache_dir: Path) -> Path:
    """``cache_dir`` (created 0700) when :func:`trusted`.  One of this user's that others could write is made 0700
    and emptied (a library planted meanwhile is never loaded); another user's (or a link) is not used: a new private
    folder for this process is, with a warning (every process then builds again: set AUTOSEG_CACHE to keep one)."""
    global _fallback_dir
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not trusted(cache_dir) and trusted_owner(cache_dir):
            os.chmod(cache_dir, 0o700)
            for f in cache_dir.iterdir():
                if not f.is_dir() or f.is_symlink():
                    f.unlink()
            warnings.warn(f"{cache_dir}: others could write this folder of compiled helpers: made private (0700), its "
                          "libraries removed and built again", RuntimeWarning, stacklevel=2)
    except OSError:
        pass
    if trusted(cache_dir):
        return cache_dir
    if _fallback_dir is None:
        _fallback_dir = Path(tempfile.mkdtemp(prefix="autoseg-native-"))
        atexit.register(shutil.rmtree, _fallback_dir, True)
        warnings.warn(f"{cache_dir}: compiled helpers are not loaded from a folder that is not yours (set "
                      f"AUTOSEG_CACHE to a folder of yours); building into {_fallback_dir} for this process",
                      RuntimeWarning, stacklevel=2)
    return _fallback_dir


def trusted_owner(path: Path) -> bool:
    """``path`` is this user's own (not a symbolic link), whoever else may write it."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return not stat.S_ISLNK(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())


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
