"""The end-to-end pipeline: select the cases → search → final training → report, in one call.

``autoseg search``, the demo and the front ends (Slicer module, browser page, through the command) call
:func:`run_search`.  It is the one place that joins the layers: ``search/`` runs studies and final trainings and
never imports the report; ``report/`` reads what they wrote.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.settings import SearchSettings

if TYPE_CHECKING:
    from AutoSegCore.search.prepare import PreparedStudy


def run_search(settings: SearchSettings, events: EventWriter = NULL_EVENTS, *, report: bool = True) -> dict:
    """Select proxy data, run (or resume) the study, retrain the winner(s) at full fidelity, write the report.

    Re-running with the same ``settings.out`` resumes: finished trials are kept, interrupted ones continue
    from their last checkpoint.  Returns the run's summary, also written to ``out/summary.json`` (with or without
    a report; the report adds its analysis to that file).
    """
    import time

    from AutoSegCore.search.budget import apply_fit
    from AutoSegCore.search.final import finalize_search
    from AutoSegCore.search.forecast import record_actual
    from AutoSegCore.search.runner import SearchRunner

    runner = SearchRunner(settings, events)
    p = runner.prepare()
    skipped = apply_fit(p, forecast_stage(p, events), events)     # trials sized to the --time budget
    if skipped:                                 # not even the smallest trial fits: the plan gets the whole budget
        runner.launcher.close()
        summary = runner.study_summary(0.0)
    else:
        summary = runner.run_trials()
    record_actual(settings.out, search_seconds=summary["seconds"])
    if settings.final:
        stand_in = None if skipped else runner.no_signal      # the planned trial learned nothing (budget.no_signal)
        if stand_in is None:
            forecast_winner(p, events)
        extra = (float(settings.time_limit or 0) if skipped else
                 float(stand_in.get("seconds_left", 0.0)) if stand_in else 0.0)
        t0 = time.time()
        summary["final"] = finalize_search(settings, p.study, p.ds, events=events, plan=p.plan, extra_seconds=extra,
                                           stand_in=stand_in["trial"] if stand_in else None)
        if stand_in:
            summary["no_signal"] = stand_in
        record_actual(settings.out, final_seconds=time.time() - t0)
    write_run_summary(settings.out, summary)
    if report:
        try:
            from AutoSegCore.report import build_report
        except ImportError:
            build_report = None
        if build_report:
            html, summ = build_report(settings.out, storage=p.storage_url)     # its password: not on disk
            events.emit("artifact", kind="report", path=str(html))
            summary["report"] = str(html)
    events.emit("done", **{k: v for k, v in summary.items() if k in ("counts", "best", "seconds", "report")})
    return summary


def write_run_summary(out, summary: dict) -> None:
    """``summary.json`` of the work folder as the run ends, before any report: what the front ends read (best
    value, parameters and per-class Dice, counts, the final training).  A report built later adds its analysis."""
    from AutoSegCore.search.search_dir import SearchDir
    from AutoSegCore.utils.io import json_safe, write_json

    write_json(SearchDir(out).summary, json_safe(summary))


def forecast_stage(p: PreparedStudy, events: EventWriter = NULL_EVENTS, *, again: bool = False) -> dict | None:
    """The cost forecast of a prepared search (``search/forecast.py``): written to ``forecast.json`` and emitted
    as a ``forecast`` event before the first trial.  A resumed search keeps its first forecast (the report
    compares with it) unless ``again``.  A forecast that fails is a log line, never a failed search."""
    from AutoSegCore.search.forecast import TooBigToTime, forecast_search
    from AutoSegCore.utils.io import read_json, write_json

    path = p.folder.forecast
    try:
        if path.is_file() and not again:
            f = read_json(path)
        else:
            f = forecast_search(p.settings, ds=p.ds, train_cases=p.train_cases, val_cases=p.val_cases,
                                fingerprint=p.fingerprint, space=p.space, fidelity=p.fidelity, plan=p.plan)
            write_json(path, f)
    except Exception as exc:       # noqa: BLE001 - the forecast informs; it must never stop a search
        why = str(exc) if isinstance(exc, TooBigToTime) else f"{type(exc).__name__}: {exc}"
        events.emit("log", message=f"no cost forecast: {why}")
        return None
    events.emit("forecast", **{k: f[k] for k in ("search_seconds", "final_seconds", "total_seconds",
                                                  "trial_seconds", "trials", "jobs", "text")}, path=str(path))
    return f


def forecast_only(settings: SearchSettings, events: EventWriter = NULL_EVENTS) -> dict | None:
    """``autoseg search --forecast-only``: the set-up (case selection, fingerprint) and the forecast; no trial."""
    from AutoSegCore.search.runner import SearchRunner

    runner = SearchRunner(settings, events)
    p = runner.prepare()
    try:
        return forecast_stage(p, events, again=True)
    finally:
        runner.launcher.close()


def forecast_winner(p: PreparedStudy, events: EventWriter = NULL_EVENTS) -> dict | None:
    """Once the search has a winner: the final training's forecast from the winner's own net (the first forecast
    had only the representative one), added to ``forecast.json`` as ``final_winner`` and emitted."""
    from AutoSegCore.search.final import rank_trials
    from AutoSegCore.search.forecast import forecast_final
    from AutoSegCore.utils.io import read_json, write_json

    path = p.folder.forecast
    top = rank_trials(p.study, 1)
    if not top or not path.is_file():
        return None
    try:
        f = read_json(path)
        w = forecast_final(p.settings, top[0].user_attrs["full_config"], p.ds, p.fingerprint)
        f["final_winner"] = {k: v for k, v in w.items() if k != "measured"} | {"trial": top[0].number}
        write_json(path, f)
    except Exception as exc:       # noqa: BLE001 - as forecast_stage
        events.emit("log", message=f"no final-training forecast: {type(exc).__name__}: {exc}")
        return None
    events.emit("forecast", final_seconds=w["seconds"], path=str(path), trial=top[0].number,
                text=f"forecast: final training of trial {top[0].number}'s net ≈ {w['seconds']:.0f} s")
    return w
