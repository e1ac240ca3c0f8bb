"""`autoseg choices [--json]`: the spaces, strategies, proxy methods and proxy networks the front ends offer.

A thin wrapper over ``AutoSegCore.choices.engine_choices``; ``--json`` prints one JSON object (what the Slicer
module and the browser front end read when the engine runs in another Python).
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("choices", help="list the search spaces, strategies, proxy methods and proxy networks",
                              description="Print the names the engine accepts for --space, --strategy, "
                                          "--method / --proxy-data and the --proxy-net presets: one line per "
                                          "list, or one JSON object with --json.")
    p.add_argument("--json", action="store_true",
                   help='print {"spaces": [...], "strategies": [...], "proxy_methods": [...], "proxy_nets": [...]}')
    p.set_defaults(func=run)


def run(args, events) -> int:
    import json

    from AutoSegCore.choices import CHOICE_KEYS, engine_choices

    choices = engine_choices()
    if args.json:
        print(json.dumps(choices))
    else:
        width = max(map(len, CHOICE_KEYS.values()))
        for key, title in CHOICE_KEYS.items():
            print(f"{title:<{width}}  {', '.join(choices[key])}")
    events.emit("done", command="choices", **choices)
    return 0
