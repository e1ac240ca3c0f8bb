"""`autoseg` command line: a thin wrapper over public AutoSegCore functions.

Each sub-command lives in ``AutoSegCore/commands/<name>.py`` and exposes ``register(subparsers)`` which adds
its parser and sets ``func=run`` where ``run(args, events) -> int``.  User mistakes (``AutoSegError``) are
printed as one line plus a hint, with exit code 2 and an ``error`` event — never a traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
import sysconfig

from AutoSegCore.errors import AutoSegError
from AutoSegCore.events import EventWriter
from AutoSegCore.utils.io import DISK_FULL
from AutoSegCore.utils.signals import sigint_interrupts


def build_parser() -> argparse.ArgumentParser:
    import AutoSegCore.commands as commands_pkg

    parser = argparse.ArgumentParser(
        prog="autoseg",
        description="AutoSegSearch engine: find, train and apply a segmentation model for your labelled CT/MR data.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"AutoSegCore.commands.{mod.name}")
        module.register(sub)
    return parser


# Operating-system errors that are the user's path, not our bug: a one-line error and exit 2, no traceback
USER_PATH_ERRORS = {
    errno.ENOENT: "check that the path exists, or that its folder can be created there",
    errno.EEXIST: "an output path must be a folder (or not exist yet), not an existing file",
    errno.ENOTDIR: "a path component is a file, not a folder: check the path",
    errno.EISDIR: "a file was expected here, not a folder: check the path",
    errno.EACCES: "you have no permission there: choose a folder you can write (e.g. under your home)",
    errno.EPERM: "the operation is not permitted there: choose another folder",
    errno.EROFS: "that file system is read-only: choose a writable folder for --out",
    errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk; re-run to resume",
    errno.EFBIG: "the file system refused the file's size (a file-size limit): free or allow more, or choose "
                 "another disk; re-run to resume",
}
if hasattr(errno, "EDQUOT"):
    USER_PATH_ERRORS[errno.EDQUOT] = "your disk quota is used up: free some space or choose a folder elsewhere; re-run"


def _is_user_path(filename) -> bool:
    """False for a path inside the installed engine or its Python: a file missing there is our bug (or a broken
    install), and hiding its traceback behind "check the path" would mislead.  ``AUTOSEG_DEBUG=1`` shows every
    traceback."""
    if os.environ.get("AUTOSEG_DEBUG") == "1":
        return False
    if not filename or not isinstance(filename, (str, os.PathLike)):
        return True
    path = os.path.abspath(os.fspath(filename))
    where = sysconfig.get_paths()
    ours = [os.path.dirname(os.path.abspath(__file__)), where["purelib"], where["platlib"], where["stdlib"]]
    return not any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in ours)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]     # recorded in an output folder's lock
    if args.version:
        from AutoSegCore import __version__
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    events = EventWriter(getattr(args, "events", None))
    try:
        with sigint_interrupts():               # Ctrl-C / a front end's Cancel, even for a background job
            return int(args.func(args, events) or 0)
    except AutoSegError as exc:
        events.emit("error", message=exc.message, hint=exc.hint)
        print(f"autoseg {args.command}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in USER_PATH_ERRORS or not _is_user_path(exc.filename):
            raise
        filename = exc.filename or (getattr(args, "out", None) if exc.errno in DISK_FULL else None)
        where = f"{filename}: " if filename else ""
        message, hint = f"{where}{exc.strerror}", USER_PATH_ERRORS[exc.errno]
        events.emit("error", message=message, hint=hint)
        print(f"autoseg {args.command}: error: {message}\n  hint: {hint}", file=sys.stderr)
        return 2
    except MemoryError:                         # numpy/torch could not allocate: say so in one line, exit 2
        message = "out of memory (an image, a network or a batch did not fit in this machine's memory)"
        hint = ("free memory (close other programs or runs), use smaller data (crop or resample), or lower "
                "AUTOSEG_MAX_IMAGE_GB so oversized volumes are refused before they are read")
        events.emit("error", message=message, hint=hint)
        print(f"autoseg {args.command}: error: {message}\n  hint: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:            # Ctrl-C, or SIGTERM/SIGHUP where a command maps them to it
        why = f" ({exc.args[0]})" if exc.args else ""
        events.emit("error", message="interrupted" + why, hint="re-run the same command to resume")
        print(f"autoseg {args.command}: interrupted{why}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    finally:
        events.close()
