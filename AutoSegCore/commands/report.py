"""`autoseg report DIR` → AutoSegCore.report.build_report: report.html + summary.json of a search folder."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.html and summary.json for a search work folder")
    p.add_argument("work_dir", metavar="DIR", help="the --out folder of 'autoseg search' (holds search.json)")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.report import build_report

    html, summary = build_report(args.work_dir, events=events)
    if not events.to_stdout:
        print(html)
        print(summary)
    events.emit("done", report=str(html), summary=str(summary))
    return 0
