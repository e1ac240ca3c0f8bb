"""The trial fork server (``python -m AutoSegCore.search.fork_server``): import torch & co. once, fork each trial.

Protocol, one JSON object per line.  Requests on stdin: ``{"trial_dir": ..., "env": {...}, "log": ...}``.
Replies on stdout: ``{"pid": N}`` when a trial started, ``{"exit": N, "code": C}`` when it ended (C < 0: killed
by signal −C, as ``subprocess.Popen.returncode``).  EOF on stdin (the search ended or died) stops the server;
trials still running then notice at their next epoch that their parent is gone (see trial_process.py).

Written by hand rather than with ``multiprocessing``'s fork server because that one re-runs the parent's
``__main__`` in every child: a user's script without a ``__main__`` guard would start a search per trial.
Nothing imported here may start a thread or touch CUDA before the fork.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback


def preload() -> None:
    """Everything a trial imports before it trains (≈ 3.5 s of the 4.5 s a fresh trial process took)."""
    import optuna  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  - torch.optim imports it on the first optimizer (1.7 s)

    import AutoSegCore.data.dataset  # noqa: F401
    import AutoSegCore.data.preprocess  # noqa: F401
    import AutoSegCore.networks.build  # noqa: F401
    import AutoSegCore.networks.measure  # noqa: F401
    import AutoSegCore.search.storage  # noqa: F401
    import AutoSegCore.search.trial_process  # noqa: F401
    import AutoSegCore.strategies  # noqa: F401
    import AutoSegCore.training.api  # noqa: F401
    import AutoSegCore.inference.predictor  # noqa: F401
    # Every trial opens the study's SQL storage: optuna imports SQLAlchemy, Alembic and its table models lazily
    # there, and SQLAlchemy sets its mappers up on first use — ≈ 0.4 s in each child, done here once instead.
    import alembic.command  # noqa: F401
    import alembic.config  # noqa: F401
    import alembic.migration  # noqa: F401
    import alembic.script  # noqa: F401
    import optuna.storages._rdb.models  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401
    import sqlalchemy.orm

    sqlalchemy.orm.configure_mappers()


def _run_child(request: dict, keep: tuple[int, ...]) -> None:
    """In the forked child: own session, own output, the request's environment, then the trial's entry point."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in keep:                                # the server's pipes (0 and 1 are replaced below)
            if fd > 2:
                os.close(fd)
        os.environ.update(request.get("env") or {})
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        from AutoSegCore.search.trial_process import main

        code = main(request["trial_dir"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:                              # noqa: BLE001 - the log is how the parent learns why
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code or 0))


def serve(inp=None, out=None) -> int:
    """Answer requests until stdin closes (or stdout does: the search is gone either way)."""
    try:
        return _serve(inp, out)
    except (BrokenPipeError, ConnectionResetError):
        return 0


def _serve(inp=None, out=None) -> int:
    inp = inp if inp is not None else sys.stdin.buffer
    out = out if out is not None else sys.stdout.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C is the study's to handle
    preload()
    fd_in, fd_out = inp.fileno(), out.fileno()
    children: set[int] = set()
    pending = b""
    while True:
        readable, _, _ = select.select([fd_in], [], [], 0.1)
        if readable:
            chunk = os.read(fd_in, 65536)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    out.flush()
                    pid = os.fork()
                    if pid == 0:
                        _run_child(json.loads(line), (fd_in, fd_out))
                    children.add(pid)
                    out.write(json.dumps({"pid": pid}).encode() + b"\n")
                    out.flush()
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                out.write(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                out.flush()


if __name__ == "__main__":
    sys.exit(serve())
