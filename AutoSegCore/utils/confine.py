"""Paths that a description file names (dataset.json's entries, ensemble.json's members) stay inside its folder.

A dataset or a model folder is often received from someone else; an entry such as ``../../home/u/.ssh/id_rsa`` or
``/etc/shadow`` would otherwise make every later stage read (and the report or the page show) a file outside it.
The check is lexical: absolute paths and ``..`` steps that leave the folder are refused, while symbolic links the
folder's owner made inside it (data kept on another disk) are followed, as nnU-Net's users expect.  pathlib has no
"join but stay inside" operation, hence these few lines.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


def confined(root: Path, text: str, where: str, error: type[Exception], hint: str) -> Path:
    """``root / text`` as an absolute path, or ``error(message naming where, hint)`` when ``text`` leaves ``root``."""
    if "\x00" in text:
        raise error(f"{where}: path {text!r} contains a NUL character", hint)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise error(f"{where}: path '{text}' is absolute; entries must be relative to {root}", hint)
    base = Path(os.path.abspath(root))
    joined = Path(os.path.normpath(base / text))
    if joined != base and base not in joined.parents:
        raise error(f"{where}: path '{text}' leads outside {base}", hint)
    return joined
