"""`autoseg gui`: serve the browser front end (AutoSegWeb, trame + trame-slicer) for a data and a work folder.

AutoSegWeb is imported inside run() only, so importing the engine never pulls trame, VTK or slicer.  It is an
installed package (``pip install 'AutoSegCore[web]'``, or ``pip install -e .`` in a checkout), never found by
editing ``sys.path``.
"""
from __future__ import annotations

import argparse

from AutoSegCore.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gui", help="serve the AutoSegSearch page in the browser (needs the 'web' extra)",
        description="Serve the AutoSegSearch page (data, proxy data, search, run, results + slice/3D views). "
                    "Paths typed into the page are confined to --data and --work. The address printed carries a "
                    "key made for this start; the page answers only requests with it, for its own address, from "
                    "its own page, and one browser session at a time (docs/web.md).")
    p.add_argument("--data", default=".", help="folder holding dataset folders (read only; default: .)")
    p.add_argument("--work", default="autoseg-work", help="folder for runs and results (default: ./autoseg-work)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; another address needs --certfile and --keyfile)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--certfile", help="TLS certificate (PEM): serve https (needed for a non-loopback --host)")
    p.add_argument("--keyfile", help="the certificate's private key (PEM, unencrypted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, events) -> int:
    try:
        from AutoSegWeb import serve  # noqa: PLC0415 - optional front end, heavy imports
    except ImportError as exc:
        raise ConfigError(f"the browser front end cannot start: {exc}",
                          "install the web extra: pip install 'AutoSegCore[web]' (trame-slicer, slicer-core)") from None
    serve(args.data, args.work, host=args.host, port=args.port, open_browser=args.open, certfile=args.certfile,
          keyfile=args.keyfile)
    return 0
