"""Atomic writes (temp file + rename) so a crash never leaves a partial or overwritten output."""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it over ``target``, on error delete it."""
    target = check_output_file(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(target.suffixes) or ".tmp"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as exc:           # name the file the user asked for, not our hidden temp file
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_UMASK)       # mkstemp makes 0600; outputs are ordinary files
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(target)) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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
