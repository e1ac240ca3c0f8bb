"""`autoseg worker --storage URL --study NAME` → AutoSegCore.search.api.run_worker (joins a study)."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.cli_types import positive_int
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    p = sub.add_parser("worker", help="join an existing study (e.g. on PostgreSQL) and run its trials")
    p.add_argument("--storage", required=True, help="the study's storage URL (postgresql://… or sqlite:///…)")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--out", default=None, help="folder for this worker's trial files (default ./autoseg-worker-HOST)")
    p.add_argument("--trials", type=positive_int, help="override the study's total trial count")
    p.add_argument("--jobs", type=positive_int, default=1)
    add_private_option(p)
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    import socket

    from AutoSegCore.utils.folder_lock import command_output

    args.out = args.out or f"autoseg-worker-{socket.gethostname()}"
    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from AutoSegCore.search.api import run_worker
    from AutoSegCore.search.runner import describe_summary
    from AutoSegCore.utils.signals import stop_signals_interrupt
    from AutoSegCore.progress import console

    with stop_signals_interrupt():                                    # SIGTERM/SIGHUP act as Ctrl-C
        summary = run_worker(args.storage, args.study, args.out, trials=args.trials, events=events, jobs=args.jobs)
    console.print(f"worker done: {describe_summary(summary)}")
    events.emit("done", **summary)
    return 0
