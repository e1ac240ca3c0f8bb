"""Trials forked from the pre-imported fork server behave like fresh `autoseg trial` processes: same exit codes,
same logs, killable by pid, and the caller's ``__main__`` is never re-run in them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from AutoSegCore.search.launcher import ForkedTrial, TrialLauncher

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork server needs os.fork")


@pytest.mark.parametrize("forked", [True, False])
def test_failing_trial_gives_the_same_exit_code_and_log_either_way(tmp_path, forked):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()                                   # no spec.json: `autoseg trial` fails reading it
    launcher = TrialLauncher(use_fork_server=forked)
    try:
        proc = launcher.start(trial_dir, {"AUTOSEG_THREADS": "1"}, trial_dir / "log.txt")
        assert isinstance(proc, ForkedTrial) is forked
        assert proc.wait(timeout=120) == 1
    finally:
        launcher.close()
    log = (trial_dir / "log.txt").read_text()
    assert "FileNotFoundError" in log and "spec.json" in log


@pytest.mark.parametrize("forked", [True, False])
def test_killed_trial_reports_the_signal(tmp_path, forked):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    os.mkfifo(trial_dir / "spec.json")                  # reading it blocks: the trial "hangs" until killed
    launcher = TrialLauncher(use_fork_server=forked)
    try:
        proc = launcher.start(trial_dir, {}, trial_dir / "log.txt")
        time.sleep(1.0)
        assert proc.poll() is None
        assert os.getsid(proc.pid) == proc.pid          # its own session: a terminal Ctrl-C is the study's
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        launcher.close()


def test_trial_ended_after_its_server_died_is_not_waited_for_forever(tmp_path):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    os.mkfifo(trial_dir / "spec.json")
    launcher = TrialLauncher(use_fork_server=True)
    try:
        proc = launcher.start(trial_dir, {}, trial_dir / "log.txt")
        launcher._server.proc.kill()                    # the server dies; its trial lives on, then ends
        launcher._server.proc.wait()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) not in (None, 0)
    finally:
        launcher.close()


def test_forked_trials_never_rerun_the_callers_script(tmp_path):
    """multiprocessing's fork server would re-import ``__main__`` in every child (a search per trial)."""
    marker = tmp_path / "marker.txt"
    script = tmp_path / "user_script.py"              # no `if __name__ == "__main__":` guard, on purpose
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from AutoSegCore.search.launcher import TrialLauncher
        with open({str(marker)!r}, "a") as fh:
            fh.write("ran\\n")
        trial_dir = Path({str(tmp_path / "trial")!r})
        trial_dir.mkdir(exist_ok=True)
        launcher = TrialLauncher(use_fork_server=True)
        codes = [launcher.start(trial_dir, {{}}, trial_dir / "log.txt").wait(timeout=120) for _ in range(2)]
        launcher.close()
        print(codes)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[1, 1]"
    assert marker.read_text() == "ran\n"


def test_a_forked_trial_opens_its_study_without_importing_anything(tmp_path):
    """What every trial needs before it trains is imported (and SQLAlchemy's mappers set up) once in the fork
    server, not in each child: optuna imports SQLAlchemy and Alembic lazily, ≈ 0.4 s per trial.  The server
    still starts no thread before it forks."""
    import json

    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=url, study_name="s").ask()
    script = textwrap.dedent(f"""
        import json, sys, threading
        from AutoSegCore.search import fork_server
        fork_server.preload()
        threads = threading.active_count()
        before = set(sys.modules)
        from AutoSegCore.search.storage import load_study, open_storage
        study = load_study(open_storage({url!r}, heartbeat=False), "s")
        print(json.dumps({{"threads": threads, "trials": len(study.trials),
                          "imported": sorted(set(sys.modules) - before)}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["threads"] == 1 and out["trials"] == 1
    packages = sorted({m.split(".")[0] for m in out["imported"]})
    assert not out["imported"], f"a forked trial imports {len(out['imported'])} modules of {packages} to open its study"
