"""Joining a running study (``autoseg worker``).  The whole pipeline (select → search → final → report) is
:func:`AutoSegCore.pipeline.run_search`; this package never imports the report."""
from __future__ import annotations

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.settings import SearchSettings


def run_worker(storage: str, study_name: str, out: str, *, trials: int | None = None,
               events: EventWriter = NULL_EVENTS, jobs: int = 1) -> dict:
    """Join an existing study from another process or machine and run trials until its budget is used."""
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
    return runner.run_trials()
