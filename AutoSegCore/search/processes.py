"""Process utilities of the trial loop: end a trial's whole process tree, say why a trial process ended."""
from __future__ import annotations

import signal

import psutil


def kill_tree(pid: int, timeout: float = 5.0) -> None:
    """Terminate a process and all its children (SIGTERM, then SIGKILL)."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


def describe_exit(code: int, log_tail: str) -> str:
    """Why a trial process that wrote no ``result.json`` ended: the signal that killed it, or its exit code and the
    last line of its log (a child that raised says so itself, in its ``result.json``)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (possibly out of memory)" if -code == signal.SIGKILL else "")
    lines = [ln for ln in log_tail.strip().splitlines() if ln.strip()]
    return f"exit code {code}: {lines[-1][:300] if lines else 'no output'}"
