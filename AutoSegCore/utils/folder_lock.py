"""One run per output folder (an exclusive lock held for the run's life), and private outputs on request.

Every command that writes a folder (search, worker, train, predict, proxy, experiment) holds ``DIR/.autoseg.lock``
while it runs: ``fcntl.flock`` on the open file, which the kernel drops however the process ends, so a killed run
never blocks its resume.  The file records the holder's pid, host, start time and command line (passwords in URLs
masked), so a second run refuses at once — ``FolderBusy``, exit 2, one line naming the other run — and touches
nothing.  A record left by a run that died is taken over with a notice.  The search's trial children and its final
training write under the parent's lock and never take it themselves.

Why hand-written rather than the ``filelock`` package: the record has to be written once the lock is won and read by
the run that is refused; filelock's flock mode keeps no record (only its soft fallback does, with an API that is not
stable across its major versions), and flock itself is one call.  Where flock is missing (Windows) or refused by the
file system (some network mounts), the file is created with ``O_EXCL`` instead, and a record whose process is gone
(on this host) is stale.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from AutoSegCore.errors import AutoSegError
from AutoSegCore.utils.io import PRIVATE_ENV, private

try:
    import fcntl
except ImportError:                     # Windows: the O_EXCL protocol below
    fcntl = None

LOCK_NAME = ".autoseg.lock"
NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}     # the file system cannot flock
STARTING_SECONDS = 10.0                 # an empty O_EXCL lock file younger than this is a run writing its record
_held: dict[str, "FolderLock"] = {}     # real path → this process's lock (taken again = counted, not re-locked)


class FolderBusy(AutoSegError):
    """Another live run writes into the output folder."""


class FolderLock:
    def __init__(self, key: str, path: Path, fd: int, flocked: bool) -> None:
        self.key, self.path, self.fd, self.flocked = key, path, fd, flocked
        self.pid, self.count = os.getpid(), 1


def command_line(argv: list[str] | None = None) -> str:
    """``autoseg ARGS`` with the password of any URL (``user:pw@``, ``password=``) masked, by the same rules as
    every stored storage URL."""
    from AutoSegCore.utils.storage_url import scrub

    args = sys.argv[1:] if argv is None else argv
    return "autoseg " + shlex.join(scrub(str(a)) for a in args)


def acquire(folder: str | Path, command: str = "", notice: Callable[[str], None] = print) -> FolderLock:
    """Lock ``folder`` (which must exist) for this process, or raise ``FolderBusy`` naming the run that holds it."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    held = _held.get(key)
    if held is not None and held.pid == os.getpid():
        held.count += 1
        return held
    path = folder / LOCK_NAME
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command}
    use_flock = fcntl is not None
    for _ in range(50):                 # another attempt only when the file changed under us
        lock = _try_flock(folder, path, key) if use_flock else _try_exclusive(folder, path, key)
        if lock is False:               # the file system cannot flock: the O_EXCL protocol from here on
            use_flock = False
            continue
        if lock is None:
            continue
        lock, before = lock
        _write(lock.fd, record)
        if before:
            notice(f"taking over {path}: the run that held it ({_who(before)}) is no longer running")
        _held[key] = lock
        return lock
    raise FolderBusy(f"{path}: the lock file keeps changing", "another run is starting there: try again")


def release(lock: FolderLock) -> None:
    """Give the folder back (the last of this process's holds removes the lock file); a forked child does nothing."""
    if lock.pid != os.getpid():
        return
    lock.count -= 1
    if lock.count > 0:
        return
    _held.pop(lock.key, None)
    try:
        if _same_file(lock.fd, lock.path):
            os.unlink(lock.path)        # before the flock is dropped: a waiter then sees a new file, see _try_flock
    finally:
        os.close(lock.fd)


def _try_flock(folder: Path, path: Path, key: str):
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
    created = True
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600 if private() else 0o644)
    except FileExistsError:
        created = False
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:        # its holder just removed it
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        before = _read(fd)
        if created and exc.errno in NO_FLOCK:
            os.unlink(path)
        os.close(fd)
        if exc.errno in NO_FLOCK:
            return False
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _busy(folder, path, before) from None
        raise
    if not _same_file(fd, path):         # won the file its holder removed on release: lock the new one instead
        os.close(fd)
        return None
    before = _read(fd)
    if before and _alive(before):         # the recorded run still runs, yet flock was granted: not enforced here
        os.close(fd)
        raise _busy(folder, path, before)
    return FolderLock(key, path, fd, True), before


def _try_exclusive(folder: Path, path: Path, key: str):
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600 if private() else 0o644)
    except FileExistsError:
        try:
            before = json.loads(path.read_text(encoding="utf-8") or "{}")
            age = time.time() - path.stat().st_mtime
        except (OSError, ValueError):
            return None
        if (not before and age < STARTING_SECONDS) or _alive(before) or (before and not _this_host(before)):
            hint = f"; if that run has ended, delete {path}" if before and not _this_host(before) else ""
            raise _busy(folder, path, before, hint) from None
        path.unlink(missing_ok=True)        # left by a run that died on this host
        return None
    return FolderLock(key, path, fd, False), None


def _write(fd: int, record: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _this_host(record: dict) -> bool:
    return record.get("host") == socket.gethostname()


def _alive(record: dict) -> bool:
    """The recorded process still runs on this host (the same process: not a later one given its pid)."""
    import psutil

    if not record or not _this_host(record):
        return False
    try:
        return psutil.Process(int(record["pid"])).create_time() <= float(record["started"]) + 1.0
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def _who(record: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("started") or 0)))
    return f"pid {record.get('pid')} on {record.get('host')}, started {started}: {record.get('command') or '?'}"


def _busy(folder: Path, path: Path, record: dict, hint: str = "") -> FolderBusy:
    if not record:
        return FolderBusy(f"{folder}: another autoseg run is starting in this folder (it holds {path.name})",
                          "wait for it to finish or stop it, or choose another --out folder")
    return FolderBusy(f"{folder}: another autoseg run is writing into this folder ({_who(record)})",
                      "wait for it to finish or stop it, or choose another --out folder" + hint)


def make_private(root: str | Path) -> None:
    """Folders 0700 and files 0600 under ``root`` (symbolic links are not followed)."""
    for where, _, files in os.walk(root):
        for path in [where, *(os.path.join(where, f) for f in files)]:
            try:
                if not os.path.islink(path):
                    os.chmod(path, 0o700 if path == where else 0o600)
            except FileNotFoundError:
                pass


def add_private_option(parser) -> None:
    parser.add_argument("--private", action="store_true",
                        help="outputs readable by you only (folders 0700, files 0600): for patient data on a shared "
                             "machine")


@contextmanager
def output_folder(folder: str | Path, *, private: bool = False, events=None,
                  argv: list[str] | None = None) -> Iterator[Path]:
    """``folder`` created if missing and locked while the body runs (``FolderBusy`` at once when another run holds
    it); with ``private`` it is 0700 from the start, every file written through ``utils.io`` is 0600 (trial children
    too: ``AUTOSEG_PRIVATE``), and what else was written is made 0600/0700 at the end.  Folders this run created
    and left empty (a refused input) are removed."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
    new = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True, **({"mode": 0o700} if private else {}))

    def notice(message: str) -> None:
        print(f"autoseg: note: {message}", file=sys.stderr)
        if events is not None:
            events.emit("log", message=message)

    try:
        lock = acquire(folder, command_line(argv), notice)
    except BaseException:
        _remove_empty(new)
        raise
    was = os.environ.get(PRIVATE_ENV)
    try:
        if private:
            os.chmod(folder, 0o700)
            os.environ[PRIVATE_ENV] = "1"
        yield folder
    finally:
        try:
            if private:
                make_private(folder)
        finally:
            if private:
                os.environ.pop(PRIVATE_ENV, None) if was is None else os.environ.__setitem__(PRIVATE_ENV, was)
            release(lock)
            _remove_empty(new)


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:                    # the deepest first; stops at the first that is not empty
        try:
            p.rmdir()
        except OSError:
            return


def command_output(args, folder: str | Path, events=None):
    """:func:`output_folder` for a command: ``--private`` and the command line from its parsed ``args``."""
    return output_folder(folder, private=bool(getattr(args, "private", False)), events=events,
                         argv=getattr(args, "argv", None))
