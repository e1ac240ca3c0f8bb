"""Start the page: offscreen OpenGL setup, loopback by default, the app object kept alive, engine stopped on exit."""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from AutoSegCore.errors import ConfigError, DatasetError

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_folders(data_dir: str | Path, work_dir: str | Path) -> tuple[Path, Path]:
    """--data must exist; --work is created if missing. Both as resolved paths (the page's confinement roots)."""
    data = Path(data_dir).expanduser()
    if not data.is_dir():
        raise DatasetError(f"data folder {data} does not exist or is not a folder",
                           "pass --data DIR, the folder holding your dataset folders (MSD layout)")
    work = Path(work_dir).expanduser()
    if work.exists() and not work.is_dir():
        raise ConfigError(f"work folder {work} is a file", "pass --work DIR, a folder for runs and results")
    work.mkdir(parents=True, exist_ok=True)
    return data.resolve(), work.resolve()


def check_port(port: int) -> int:
    if not 0 < int(port) < 65536:
        raise ConfigError(f"port {port} is outside 1–65535", "e.g. --port 8080")
    return int(port)


def serve(data_dir: str | Path, work_dir: str | Path, host: str = "127.0.0.1", port: int = 8080,
          open_browser: bool = False) -> None:
    """Serve the page until interrupted. Blocks. Only loopback unless ``host`` is given explicitly."""
    data, work = check_folders(data_dir, work_dir)
    port = check_port(port)
    if not is_loopback(host):
        print(f"WARNING: serving on {host}: anyone who can reach this address can read {data}, write to {work} and "
              "start training runs. There is no login. Prefer the default 127.0.0.1 with an SSH tunnel.",
              file=sys.stderr)
    if not os.environ.get("DISPLAY"):
        # no X server: pick Mesa's offscreen EGL so VTK does not try (and warn about) X first
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from trame.app import get_server  # noqa: PLC0415 - heavy: only when serving

    from AutoSegWeb.app import AutoSegWebApp  # noqa: PLC0415

    server = get_server("autoseg-web", client_type="vue3")
    app = AutoSegWebApp(data, work, server=server)       # keep this reference for the server's lifetime
    print(f"AutoSegSearch page: http://{host}:{port}/  (data {data}, work {work})", flush=True)
    try:
        server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False,
                     disable_logging=True, exec_mode="main")
    finally:
        app.shutdown()
