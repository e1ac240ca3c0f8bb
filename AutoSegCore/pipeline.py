"""The end-to-end pipeline: select the cases → search → final training → report, in one call.

``autoseg search``, the demo and the front ends (Slicer module, browser page, through the command) call
:func:`run_search`.  It is the one place that joins the layers: ``search/`` runs studies and final trainings and
never imports the report; ``report/`` reads what they wrote.
"""
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
