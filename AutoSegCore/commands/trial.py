"""`autoseg trial TRIAL_DIR` — internal: the child process that trains one trial (see search/trial_process.py)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("trial", help="(internal) run one trial of a search in this process")
    p.add_argument("trial_dir", help="folder holding spec.json written by the search")
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.search.trial_process import run_trial_process

    return run_trial_process(args.trial_dir)
