"""Public entry points of a search (the CLI's `search`, `worker` and `trial` commands wrap these)."""
from __future__ import annotations

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.settings import SearchSettings


def run_search(settings: SearchSettings, events: EventWriter = NULL_EVENTS, *, report: bool = True) -> dict:
    """Select proxy data, run (or resume) the study, retrain the winner(s) at full fidelity, write the report.

    Re-running with the same ``settings.out`` resumes: finished trials are kept, interrupted ones continue
    from their last checkpoint.  Returns a summary dict (also in ``out/summary.json`` when a report is built).
    """
    from AutoSegCore.search.final import finalize_search
    from AutoSegCore.search.runner import SearchRunner

    runner = SearchRunner(settings, events)
    runner.prepare()
    summary = runner.run_trials()
    if settings.final:
        summary["final"] = finalize_search(settings, runner.study, runner.ds, events=events)
    if report:
        try:
            from AutoSegCore.report import build_report
        except ImportError:
            build_report = None
        if build_report:
            html, summ = build_report(settings.out)
            events.emit("artifact", kind="report", path=str(html))
            summary["report"] = str(html)
    events.emit("done", **{k: v for k, v in summary.items() if k in ("counts", "best", "seconds", "report")})
    return summary


def run_worker(storage: str, study_name: str, out: str, *, trials: int | None = None,
               events: EventWriter = NULL_EVENTS, jobs: int = 1) -> dict:
    """Join an existing study from another process or machine and run trials until its budget is used."""
    import optuna

    from AutoSegCore.errors import StorageError
    from AutoSegCore.search.runner import SearchRunner
    from AutoSegCore.search.storage import load_study, open_storage

    st = open_storage(storage, must_exist=True)
    study = load_study(st, study_name)
    saved = study.user_attrs.get("settings")
    if not saved:
        raise StorageError(f"study '{study_name}' was not created by 'autoseg search'",
                           "start the study with 'autoseg search --storage URL' first")
    settings = SearchSettings.from_dict({**saved, "out": out, "storage": storage, "study_name": study_name,
                                         "jobs": jobs, **({"trials": trials} if trials else {})})
    runner = SearchRunner(settings, events, join=True)
    runner.prepare()
    del optuna
    return runner.run_trials()
