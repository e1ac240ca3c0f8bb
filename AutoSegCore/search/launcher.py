"""How a trial's child process starts: forked from a pre-imported server, or as a fresh interpreter.

A fresh ``python -m AutoSegCore.search.trial_process DIR`` spends ≈ 3.5 s importing torch, MONAI and Optuna before it
trains (≈ 4.5 s per trial on 2 busy cores), more than a proxy trial's epochs.  The fork server
(:mod:`AutoSegCore.search.fork_server`) imports them once per search; each trial is then a ``fork()`` of it:
a real process of its own (own pid and session, own memory limit, killable, its exit code or signal reported
back), so the runner's fault model is unchanged.

Needs ``os.fork`` (Linux, macOS).  Elsewhere, with ``AUTOSEG_FORKSERVER=0``, or if the server cannot start,
each trial is a fresh interpreter as before.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER_GONE = 70          # the trial ended after its fork server died, so its own exit code is unknown


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def fork_server_wanted() -> bool:
    """True unless the platform cannot fork or the user turned it off (``AUTOSEG_FORKSERVER=0``)."""
    if os.environ.get("AUTOSEG_FORKSERVER", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return hasattr(os, "fork")


class ForkedTrial:
    """A trial forked by the server, with the part of ``subprocess.Popen``'s interface the runner uses."""

    def __init__(self, server: "_ForkServer", pid: int) -> None:
        self.server, self.pid = server, pid

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        code = self.server.exit_codes.get(self.pid)
        if code is None and not self.server.alive() and not _running(self.pid):
            code = self.server.exit_codes.setdefault(self.pid, SERVER_GONE)
        return code

    def wait(self, timeout: float | None = None) -> int | None:
        end = None if timeout is None else time.monotonic() + timeout
        with self.server.changed:
            while self.poll() is None:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.server.changed.wait(0.2 if left is None else min(left, 0.2))
        return self.poll()


class _ForkServer:
    """The parent's handle on one fork-server process; a reader thread collects its replies."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "AutoSegCore.search.fork_server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.exit_codes: dict[int, int] = {}
        self.started: list[int] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, name="autoseg-fork-server", daemon=True).start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self.changed:
                if "exit" in msg:
                    self.exit_codes[int(msg["exit"])] = int(msg["code"])
                elif "pid" in msg:
                    self.started.append(int(msg["pid"]))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def start(self, trial_dir: Path, env: dict, log_path: Path, timeout: float = 300.0) -> ForkedTrial:
        request = {"trial_dir": str(trial_dir), "env": env, "log": str(log_path)}
        with self.changed:
            self.started.clear()
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            end = time.monotonic() + timeout
            while not self.started:
                if not self.alive() or time.monotonic() > end:
                    raise OSError("the trial fork server stopped answering")
                self.changed.wait(0.2)
            return ForkedTrial(self, self.started.pop(0))

    def close(self) -> None:
        try:
            self.proc.stdin.close()                 # EOF: the server exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class TrialLauncher:
    """Starts the trial processes of one search; ``close()`` once its trial loop has ended."""

    def __init__(self, use_fork_server: bool | None = None) -> None:
        self.use_fork_server = fork_server_wanted() if use_fork_server is None else use_fork_server
        self._server: _ForkServer | None = None

    def warm(self) -> None:
        """Start the fork server now, so its imports overlap the caller's own work (e.g. case selection)."""
        if self.use_fork_server and (self._server is None or not self._server.alive()):
            try:
                self._server = _ForkServer()
            except OSError:
                self.use_fork_server, self._server = False, None

    def start(self, trial_dir: Path, env: dict | None, log_path: Path):
        """Start the trial of ``trial_dir`` (its spec.json) with ``env`` (or nothing) on top of this process's
        environment; the trial's own settings (threads, device) are in its spec, not here."""
        env = dict(env or {})
        self.warm()
        if self._server is not None:
            try:
                return self._server.start(trial_dir, env, log_path)
            except OSError:                          # the server died: fall back to fresh interpreters
                self.close()
                self.use_fork_server = False
        with open(log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "AutoSegCore.search.trial_process", str(trial_dir)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                    start_new_session=True)

    def close(self) -> None:
        """Stop the fork server (the next search starts a fresh one)."""
        if self._server is not None:
            self._server.close()
            self._server = None
