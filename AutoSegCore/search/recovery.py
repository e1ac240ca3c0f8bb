"""Dead-worker recovery: trials left RUNNING by a worker that died are failed, marked re-queued and queued again;
their re-run continues from the last checkpoint."""
from __future__ import annotations

import os

import optuna
import psutil

from AutoSegCore.search.processes import kill_tree
from AutoSegCore.strategies.penalty import REQUEUED, REQUEUED_ATTR


def recover_interrupted(study: optuna.Study, host: str) -> int:
    """Trials left RUNNING by a dead worker are failed and re-queued with the same parameters; the re-run
    continues from the dead trial's last checkpoint.  Dead means: of this host and its process is gone, or of
    any host and without a heartbeat for the storage's grace period (a machine that lost power).  Safe with
    many workers at once: only the one whose FAIL lands re-queues, and no one reclaims its own trials."""
    storage = study._storage
    try:          # Optuna's fail_stale_trials fails them but returns nothing: they could not be re-queued
        stale = set(storage._get_stale_trial_ids(study._study_id))
    except Exception:            # no heartbeat on this storage (journal file), or heartbeats disabled
        stale = set()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.system_attrs.get("autoseg_worker") or {}
        here = worker.get("host") == host
        if here and int(worker.get("parent_pid", -1)) == os.getpid():
            continue                         # our own running trial (its heartbeat may merely be late)
        if here and not psutil.pid_exists(int(worker.get("parent_pid", -1))):
            why = "worker died"
        elif t._trial_id in stale:
            why = f"worker on {worker.get('host', 'an unknown host')} stopped sending heartbeats"
        else:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "error", f"{why}; {REQUEUED}")
            storage.set_trial_user_attr(t._trial_id, REQUEUED_ATTR, True)
            if not storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue                         # it just finished, or another worker reclaimed it first
        child = worker.get("child_pid")
        if here and child and psutil.pid_exists(int(child)):
            kill_tree(int(child))            # an orphaned trial of this host (pids mean nothing elsewhere)
        study.enqueue_trial(t.params, user_attrs={"resume_from": worker.get("trial_dir", ""),
                                                        "requeued_from": t.number}, skip_if_exists=False)
        n += 1
    return n
