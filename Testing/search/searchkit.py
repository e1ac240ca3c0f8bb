"""Helpers for the search tests: a small real dataset copy, running the CLI, reading events and studies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared_data import DATA_ROOT, copy_msd_subset

HIPPO = DATA_ROOT / "Task04_Hippocampus"
TINY = ["--space", "proxy-hpo", "--strategy", "random", "--epochs", "2", "--min-epochs", "1",
        "--steps-per-epoch", "2", "--proxy-net", "levels=3"]


def make_subset(dest: Path, n: int = 10) -> Path:
    return copy_msd_subset(dest, n)


def env() -> dict:
    e = dict(os.environ)
    e.update(AUTOSEG_THREADS="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return e


def autoseg(*args, timeout=900, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**env(), **(env_extra or {})}, **kw)


def ignore_sigint() -> None:
    """What a non-interactive shell (a CI runner, ``autoseg search … &``) does to a job it starts in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start(*args, log: Path, sigint_ignored: bool = False) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen([sys.executable, "-m", "AutoSegCore", *map(str, args)], stdout=fh,
                            stderr=subprocess.STDOUT, env=env(), preexec_fn=ignore_sigint if sigint_ignored else None)


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip().endswith("}")]


def wait_for(predicate, timeout: float = 600, every: float = 0.5):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def load(storage: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)
