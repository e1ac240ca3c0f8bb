"""Atomic writes (temp file + rename) so a crash never leaves a partial or overwritten output."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PRIVATE_ENV = "AUTOSEG_PRIVATE"         # "1": outputs 0600 / folders 0700 (``--private``; trial children inherit it)
# a full disk, a disk quota, a file-size limit: the user's to fix, whichever writer hit it
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def private() -> bool:
    return os.environ.get(PRIVATE_ENV) == "1"


def temp_name(target: Path) -> Path:
    """``.<name>.<pid>-<random><ending>`` beside ``target``: unique per process, and a leftover names the process
    that wrote it, so a cleaner can spare the temp files of a run that is still alive."""
    suffix = "".join(target.suffixes) or ".tmp"
    return target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def temp_owner(target: Path, name: str) -> int | None:
    """The pid in a :func:`temp_name` of ``target`` (None for any other name, e.g. an older run's)."""
    prefix = f".{target.name}."
    found = re.match(r"(\d+)-[0-9a-f]{8}", name[len(prefix):]) if name.startswith(prefix) else None
    return int(found.group(1)) if found else None


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it over ``target``, on error delete it.

    The temp file is created with mode 0666 (0600 with ``--private``) so the kernel applies the process's umask —
    no ``os.umask`` call, which would change it for every thread.  A write that fails for want of space (also as
    torch's or SimpleITK's ``RuntimeError``) is re-raised as ``OSError(ENOSPC|EDQUOT|EFBIG)`` naming ``target``."""
    target = check_output_file(target)
    mode = 0o600 if private() else 0o666
    try:
        target.parent.mkdir(parents=True, exist_ok=True, **({"mode": 0o700} if private() else {}))
        while True:
            tmp_path = temp_name(target)
            try:
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                break
            except FileExistsError:
                continue
    except OSError as exc:           # name the file the user asked for, not our hidden temp file
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    created_mode = os.fstat(fd).st_mode & 0o7777
    os.close(fd)
    try:
        try:
            yield tmp_path
        except (OSError, RuntimeError) as exc:
            full = disk_full(exc, tmp_path)
            if full is None:
                raise
            raise OSError(full, os.strerror(full), str(target)) from None
        if tmp_path.exists():
            os.chmod(tmp_path, created_mode)       # a writer that replaced the temp file keeps the mode chosen here
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(target)) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def disk_full(exc: BaseException, written: Path | None = None) -> int | None:
    """The errno (one of ``DISK_FULL``) when ``exc`` came from a full disk, a quota or a file-size limit, else None.

    Why a probe: torch.save reports a failed write as ``RuntimeError: … unexpected pos …`` and SimpleITK's text
    may not carry the OS error either, so the file system is asked: 64 KiB more appended to the file that failed
    (``written``, deleted by the caller) fails the same way when space was the cause."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in DISK_FULL else None
    if not isinstance(exc, RuntimeError):
        return None
    for code in DISK_FULL:
        if os.strerror(code) in str(exc):
            return code
    if written is None or not written.is_file():
        return None
    try:
        fd = os.open(written, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, bytes(65536))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as probe:
        return probe.errno if probe.errno in DISK_FULL else None
    return None


def check_output_file(target: str | Path) -> Path:
    """Refuse an output file path that cannot work — an existing folder, or a file where a folder must be — before
    the work that produces it (``OSError`` with the path; the CLI shows it as a one-line error)."""
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
            break
    return target


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | Path, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_safe(value: Any) -> Any:
    """The one JSON sanitiser: dicts and lists recursively, numpy/torch arrays and scalars (anything with
    ``tolist``) as Python values, NaN/inf as ``None`` (strict JSON), paths as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
        if isinstance(value, list):
            return json_safe(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
