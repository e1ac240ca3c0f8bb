"""Which image files form one case to predict, and the case's name (what ``prediction.find_inputs`` groups).

nnU-Net names a case's channels ``<case>_0000``, ``<case>_0001``, …; users name cases ``site_9584``.  A ``_NNNN``
suffix is therefore a channel only when the model has that many channels and the stem's files are exactly the
full set ``_0000`` … ``_{C-1}``; otherwise it is part of the name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})$")


@dataclass
class CaseInput:
    """One case to predict: its name (the outputs' stem) and its image file(s) — one file, one file per channel,
    or a DICOM series folder."""
    case: str
    paths: list[Path]
    series: str | None = None
    # why this file's ``_NNNN`` siblings are not one case (a C-channel model given an incomplete or overfull
    # ``<stem>_000N`` set): the error check_header raises if the file alone has the wrong number of channels
    channel_error: tuple[str, str] | None = None


def _file_name(path: Path) -> str:
    """The name without its ending (a DICOM folder: the folder's name)."""
    from AutoSegCore.data.volumes import strip_ending

    return path.name if path.is_dir() else strip_ending(path.name)


def _channel_suffix(path: Path) -> tuple[str, int] | None:
    """``(stem, channel)`` of a ``<stem>_NNNN`` image file; None for other names and for folders."""
    m = None if path.is_dir() else CHANNEL_FILE.match(_file_name(path))
    return (m.group(1), int(m.group(2))) if m else None


def case_name(paths: str | Path | list, channels: int) -> str:
    """The name of the case made of ``paths`` (one file, or its channel files in order) for a ``channels``-channel
    model: the stem when the files are exactly ``<stem>_0000`` … ``<stem>_{channels-1}`` (nnU-Net's channel files,
    one file ``<stem>_0000`` for a one-channel model), else the first file's name without its ending (any
    ``_NNNN`` then is part of the name: ``site_9584.nii.gz`` → ``site_9584``; a DICOM folder: its name)."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    suffixes = [_channel_suffix(p) for p in paths]
    if len(paths) == channels and all(suffixes) and len({s for s, _ in suffixes}) == 1 \
            and sorted(c for _, c in suffixes) == list(range(channels)):
        return suffixes[0][0]
    return _file_name(paths[0])


def group_channel_files(files: list[Path], channels: int) -> list[CaseInput]:
    """Image files as cases for a ``channels``-channel model, in the order of each case's first file.  Files are
    grouped by stem (the name without a ``_NNNN`` suffix): a stem whose files carry exactly the suffixes ``0000`` …
    ``channels-1`` is one case named by the stem (its files in channel order); every other file is a case of its
    own named by its full name.  Where a multi-channel model gets part of a set (``x_0000`` without ``x_0001``) or
    too many, those files carry a note: check_header reports the set, not just a file's channel count."""
    return [case for _, case in group_files([Path(f) for f in files], channels)]


def group_files(files: list[Path], channels: int) -> list[tuple[int, CaseInput]]:
    """:func:`group_channel_files` with each case's first position in ``files``."""
    by_stem: dict[str, list[tuple[int, int]]] = {}     # stem → (channel, position in files)
    for i, f in enumerate(files):
        suffix = _channel_suffix(f)
        if suffix:
            by_stem.setdefault(suffix[0], []).append((suffix[1], i))
    case_at: dict[int, CaseInput] = {}
    for stem, members in by_stem.items():
        members.sort()
        if [c for c, _ in members] == list(range(channels)):
            case = CaseInput(stem, [files[i] for _, i in members])
            case_at.update((i, case) for _, i in members)
            continue
        note = (_channel_set_note(stem, [(c, files[i]) for c, i in members], channels)
                if channels > 1 and any(c < channels for c, _ in members) else None)
        case_at.update((i, CaseInput(_file_name(files[i]), [files[i]], channel_error=note)) for _, i in members)
    cases: list[tuple[int, CaseInput]] = []
    taken: set[int] = set()
    for i, f in enumerate(files):
        case = case_at.get(i) or CaseInput(_file_name(f), [f])
        if id(case) not in taken:               # a channel set: once, where its first file was given
            taken.add(id(case))
            cases.append((i, case))
    return cases


def _channel_set_note(stem: str, members: list[tuple[int, Path]], channels: int) -> tuple[str, str]:
    """The error for a ``<stem>_NNNN`` set that is not the model's channels: ``(message, hint)``, naming the
    files given, the missing ones and the ones beyond the model's channels."""
    from AutoSegCore.data.volumes import strip_ending

    first = members[0][1]
    ending = first.name[len(strip_ending(first.name)):]
    given = [c for c, _ in members]
    missing = [f"{stem}_{c:04d}{ending}" for c in range(channels) if c not in given]
    extra = [f.name for c, f in members if c >= channels]
    twice = sorted({f.name for c, f in members if given.count(c) > 1})
    what = "; ".join(part for part in (
        f"missing {', '.join(missing)}" if missing else "",
        f"beyond the model's channels: {', '.join(extra)}" if extra else "",
        f"given twice: {', '.join(twice)}" if twice else "") if part)
    names = ", ".join(f.name for _, f in members)
    message = (f"{first.parent}: {names}: channel files that do not match the model's {channels} channels "
               f"{stem}_0000 … {stem}_{channels - 1:04d} ({what})")
    hint = (f"give all {channels} channel files {stem}_0000{ending} … {stem}_{channels - 1:04d}{ending} of the case "
            "together (in the order used for training), or one 4D file (x, y, z, channel) per case")
    return message, hint
