"""Run the AutoSegCore engine as a child process and follow it through its JSON-lines event file.

Why a child process: training uses all cores and lots of memory for minutes to hours; in a child it can neither
freeze nor crash Slicer, and cancel is a plain process kill.  Why polling instead of a reader thread: MRML and
Qt objects may only be touched from the main thread, so the GUI's timer (``qt.QTimer``) or the browser front
end's event loop calls :meth:`EngineProcess.poll`, and every callback runs in that caller's thread.  The child's
stdout/stderr go to a log file (not a pipe), so the child can never block on a full pipe while nobody reads.

No Qt and no ``slicer`` import here: the same class serves the desktop module, the browser front end and tests.
"""
from __future__ import annotations

import enum
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import psutil


def _is_engine(proc: psutil.Process) -> bool:
    """``… -m AutoSegCore <command>`` other than a trial child (those are the engine's to stop)."""
    try:
        args = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    for i, arg in enumerate(args[:-1]):
        if arg == "-m" and args[i + 1] == "AutoSegCore":
            return args[i + 2:i + 3] != ["trial"]
    return False


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _merge(first: list[psutil.Process], second: list[psutil.Process]) -> list[psutil.Process]:
    """``first`` then the processes of ``second`` not in it (psutil compares pid and creation time)."""
    return first + [p for p in second if p not in first]


class ProcessState(str, enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def engine_python() -> str:
    """The Python that runs the engine: inside the desktop Slicer, the ``PythonSlicer`` of this Slicer (beside its
    executable or in its ``bin/``), never one found on PATH — that may be another Slicer's, with another Python and
    packages; else this interpreter."""
    try:
        import slicer  # noqa: PLC0415 - optional: absent when the engine runs without Slicer

        in_desktop_slicer = hasattr(slicer, "app")
    except ImportError:
        in_desktop_slicer = False
    if in_desktop_slicer:
        found = own_python_slicer(sys.executable, getattr(slicer.app, "slicerHome", None))
        if found:
            return found
    return sys.executable


def own_python_slicer(executable: str, slicer_home: str | None = None) -> str | None:
    """``PythonSlicer`` beside ``executable`` (Slicer's ``sys.executable`` is ``bin/PythonSlicer`` or the app) or in
    ``slicer_home/bin``; None when neither holds it."""
    folders = [os.path.dirname(os.path.abspath(executable))]
    if slicer_home:
        folders.append(os.path.join(str(slicer_home), "bin"))
    for folder in folders:
        found = shutil.which("PythonSlicer", path=folder)
        if found:
            return found
    return None


# How long a cancelled engine may take to stop on its own before it is terminated: its own stop waits up to 5 s
# for each trial process and 10 s for its fork server to exit, and on loaded cores it needs all of that
CANCEL_GRACE_SECONDS = 30.0


def engine_command(*args: str, python: str | None = None) -> list[str]:
    """``[python, -m, AutoSegCore, *args]`` with every argument as a string."""
    return [python or engine_python(), "-m", "AutoSegCore", *[str(a) for a in args]]


class EngineProcess:
    """One engine command running as a child process, observed through its ``--events`` file.

    Call :meth:`start`, then :meth:`poll` periodically (GUI timer) or :meth:`wait` (scripts, tests).
    ``on_event(dict)`` gets every event once, in order; ``on_log(str)`` gets new stdout/stderr text;
    ``on_finished(EngineProcess)`` is called once when the child has exited or was cancelled.
    """

    def __init__(self, args: Sequence[str], events_path: str | Path, log_path: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None, on_log: Callable[[str], None] | None = None,
                 on_finished: Callable[["EngineProcess"], None] | None = None,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 python: str | None = None) -> None:
        self.events_path = Path(events_path)
        self.log_path = Path(log_path) if log_path else self.events_path.with_suffix(".log")
        args = [str(a) for a in args]
        if "--events" not in args:
            args += ["--events", str(self.events_path)]
        self.command = engine_command(*args, python=python)
        self.on_event, self.on_log, self.on_finished = on_event, on_log, on_finished
        self.env = env
        self.cwd = str(cwd) if cwd else None
        self.state = ProcessState.NOT_STARTED
        self.events: list[dict] = []
        self.returncode: int | None = None
        self.error: dict | None = None          # the last "error" event: {"message", "hint"}
        self._popen: subprocess.Popen | None = None
        self._log_file = None
        self._event_offset = 0
        self._log_offset = 0
        self._finished_called = False
        self._cancel: dict | None = None        # set by request_cancel: the tree and when to escalate
        self.started_at: float | None = None
        self.ended_at: float | None = None

    # --- life cycle --------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self.state == ProcessState.RUNNING

    def start(self) -> "EngineProcess":
        if self.state != ProcessState.NOT_STARTED:
            raise RuntimeError("an EngineProcess can be started only once")
        self.events_path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh events file: events of an earlier run in the same folder must not be replayed
        self.events_path.unlink(missing_ok=True)
        self._log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        env.update(self.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        kwargs: dict = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True      # Ctrl+C in Slicer's terminal must not hit the engine
        else:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        self._popen = subprocess.Popen(self.command, stdout=self._log_file, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, cwd=self.cwd, **kwargs)
        self.started_at = time.time()
        self.state = ProcessState.RUNNING
        return self

    def poll(self) -> list[dict]:
        """Deliver new events and log text; detect the end of the child. Never blocks."""
        if self._popen is None:
            return []
        if self.cancelling:
            new = self._read_new()
            self._advance_cancel()
            return new
        exited = self._popen.poll() is not None if self.state == ProcessState.RUNNING else False
        new = self._read_new()
        if exited:
            new += self._read_new()              # whatever the child wrote just before it exited
            self.returncode = self._popen.returncode
            self.state = ProcessState.SUCCEEDED if self.returncode == 0 else ProcessState.FAILED
            self._finish()
        return new

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> ProcessState:
        """Poll until the child ends (or ``timeout`` seconds pass); returns the state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state == ProcessState.RUNNING:
            self.poll()
            if self.state != ProcessState.RUNNING:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(interval)
        return self.state

    def process_tree(self) -> list[psutil.Process]:
        """The child and all its descendants (trial runners, data loader workers...)."""
        if self._popen is None:
            return []
        try:
            root = psutil.Process(self._popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    @property
    def cancelling(self) -> bool:
        """Cancel was requested and the child is still stopping (``running`` stays True until it has)."""
        return self._cancel is not None and self.state == ProcessState.RUNNING

    def request_cancel(self, timeout: float = 5.0, grace: float = CANCEL_GRACE_SECONDS) -> list[int]:
        """Start stopping the engine and return at once; :meth:`poll` finishes the job.  Returns the pids seen.

        First the engine gets Ctrl-C (SIGINT, POSIX): a search then stops its trials at their last checkpoint,
        re-queues them and reports what the study holds, so re-running the same command resumes it.  Whatever is
        still alive when the engine has exited, or after ``grace`` seconds, is terminated, and ``timeout``
        seconds later killed: the launcher ``PythonSlicer`` is not the process that does the work, and the
        engine starts its own trial processes, so killing only the direct child would leave orphans that keep
        using the CPU.  Why not block here: the GUI calls this from its event loop, and a search may need
        seconds to checkpoint and re-queue — the panel must stay responsive meanwhile (its poll timer runs on).
        """
        if self.state != ProcessState.RUNNING:
            return []
        if self._cancel is not None:
            return [p.pid for p in self._cancel["tree"]]
        tree = self.process_tree()
        interrupted = False
        if os.name == "posix" and grace > 0:
            for proc in tree:
                if _is_engine(proc):
                    try:
                        proc.send_signal(signal.SIGINT)
                        interrupted = True
                    except psutil.NoSuchProcess:
                        pass
        now = time.monotonic()
        self._cancel = {"tree": tree, "timeout": timeout, "terminate_at": now + grace if interrupted else now,
                        "kill_at": None}
        self._advance_cancel()
        return [p.pid for p in tree]

    def cancel(self, timeout: float = 5.0, grace: float = CANCEL_GRACE_SECONDS) -> list[int]:
        """:meth:`request_cancel`, then wait until everything has stopped (scripts, tests, shutting down)."""
        pids = self.request_cancel(timeout=timeout, grace=grace)
        give_up = time.monotonic() + grace + 3 * timeout + 5
        while self.state == ProcessState.RUNNING and time.monotonic() < give_up:
            time.sleep(0.05)
            self.poll()
        return pids

    def _advance_cancel(self) -> None:
        """One non-blocking step of a requested cancel: escalate when due, finish when nothing is left."""
        c = self._cancel
        now = time.monotonic()
        engine_exited = self._popen is None or self._popen.poll() is not None
        if c["kill_at"] is None and (engine_exited or now >= c["terminate_at"]):
            # children first, so none is re-parented and missed; the tree is re-read for late children
            c["tree"] = _merge(c["tree"], self.process_tree())
            for proc in reversed(c["tree"]):
                try:
                    proc.terminate()
                except psutil.NoSuchProcess:
                    pass
            c["kill_at"] = now + c["timeout"]
        alive = [p for p in c["tree"] if _alive(p)]
        if alive and c["kill_at"] is not None and now >= c["kill_at"]:
            for proc in alive:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            alive = [p for p in alive if _alive(p)]
        if c["kill_at"] is not None and not alive and engine_exited:
            self.returncode = self._popen.returncode if self._popen is not None else None
            self._read_new()
            self.state = ProcessState.CANCELLED
            self._finish()

    # --- helpers -----------------------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]

    def _read_new(self) -> list[dict]:
        # imported here: inside Slicer the engine package may be installed only after this module is loaded
        from AutoSegCore.events import read_events  # noqa: PLC0415

        new, self._event_offset = read_events(self.events_path, self._event_offset)
        for event in new:
            self.events.append(event)
            if event.get("event") == "error":
                self.error = event
            if self.on_event:
                self.on_event(event)
        if self.on_log and self.log_path.exists():
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                chunk = fh.read()
            # hand over whole lines only, like read_events
            cut = chunk.rfind(b"\n") + 1
            if cut:
                self._log_offset += cut
                self.on_log(chunk[:cut].decode("utf-8", errors="replace"))
        return new

    def _finish(self) -> None:
        self.ended_at = time.time()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if not self._finished_called:
            self._finished_called = True
            if self.on_finished:
                self.on_finished(self)

    def failure_message(self) -> str:
        """A one-paragraph explanation for the user when the run failed."""
        if self.error:
            msg = self.error.get("message", "engine error")
            hint = self.error.get("hint")
            return f"{msg}\nHint: {hint}" if hint else msg
        tail = self.log_text().strip().splitlines()[-5:]
        return f"engine exited with code {self.returncode}" + ("\n" + "\n".join(tail) if tail else "")
