"""`autoseg doctor [--json]`: the Python, torch build, GPUs and the devices/precision ``auto`` picks here.

A thin wrapper over ``AutoSegCore.doctor.environment_report`` (``format_report`` for the lines); what a GPU user
runs after installing, before a search.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check the install: torch build, GPUs, what --device auto picks",
                              description="Print the Python and torch versions, whether torch is a CUDA build, "
                                          "each GPU (memory, bf16, compute capability), CUDA MPS, what --device "
                                          "auto and training.amp: auto pick, and the threads; one JSON object "
                                          "with --json.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args, events) -> int:
    import json

    from AutoSegCore.doctor import environment_report, format_report

    report = environment_report()
    print(json.dumps(report) if args.json else format_report(report))
    events.emit("done", command="doctor", **report)
    return 0
