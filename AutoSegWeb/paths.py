"""Confine every path typed into the page to the folders the server was started with (--data, --work).

The page is a remote control over the file system, so a path is accepted only when it lies inside one of the
allowed roots: ``..`` components are refused outright, the check is first done on the text alone (so a path
outside is refused before the file system is ever touched — not even ``stat``), then again after symlinks are
resolved (a link inside the root that points outside is an escape).  Written by hand because neither pathlib nor
any library we use offers "resolve inside a jail"; it is ~40 lines.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath

from AutoSegCore.errors import DatasetError


class ConfinedRoot:
    """One allowed folder. ``resolve(text)`` returns an absolute, symlink-free path inside it or raises."""

    def __init__(self, root: str | Path, label: str) -> None:
        self.root = Path(root).expanduser().resolve(strict=True)
        self.label = label

    def resolve(self, text: str | os.PathLike, must_exist: bool = True, kind: str = "path") -> Path:
        raw = str(text).strip()
        hint = f"give a folder inside {self.root} (relative to it, or absolute)"
        if not raw:
            raise DatasetError(f"no {kind} given", hint)
        if "\x00" in raw:
            raise DatasetError(f"{kind} {raw!r} contains a NUL character", hint)
        pure = PurePath(os.path.expanduser(raw)) if raw.startswith("~") else PurePath(raw)
        if ".." in pure.parts:
            raise DatasetError(f"{kind} '{raw}' contains '..'", hint)
        candidate = Path(pure) if pure.is_absolute() else self.root / pure
        # 1) lexical check: nothing outside the root is looked at, not even with stat()
        if not _inside(Path(os.path.normpath(candidate)), self.root):
            raise DatasetError(f"{kind} '{raw}' is outside the {self.label} folder {self.root}", hint)
        # 2) the same check after following symlinks inside the root
        resolved = candidate.resolve(strict=False)
        if not _inside(resolved, self.root):
            raise DatasetError(f"{kind} '{raw}' leads outside the {self.label} folder {self.root} "
                               "(through a symbolic link)", hint)
        if must_exist and not resolved.exists():
            raise DatasetError(f"{kind} '{raw}' does not exist in {self.root}", hint)
        return resolved

    def relative(self, path: str | Path) -> str:
        """How the page shows a path inside the root."""
        rel = Path(path).resolve().relative_to(self.root)
        return "." if str(rel) == "." else str(rel)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
