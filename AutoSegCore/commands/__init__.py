"""One module per `autoseg` sub-command; each has `register(subparsers)`. Discovered automatically by cli.py."""
