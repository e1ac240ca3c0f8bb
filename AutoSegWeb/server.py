"""Start the page: checks first (folders, port, address, TLS), then offscreen OpenGL, the page's guard (key, Host,
Origin, one browser session: :mod:`AutoSegWeb.guard`), the app object kept alive, the engine stopped on exit."""
from __future__ import annotations

import logging
import os
import socket
import ssl
import sys
import tempfile
import webbrowser
from pathlib import Path

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegWeb.guard import PageGuard, is_loopback

WILDCARDS = ("0.0.0.0", "::")


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


def tls_context(host: str, certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The TLS set-up, checked before anything starts: a non-loopback address needs it (the key travels in every
    request), and a certificate needs its key."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError("--certfile and --keyfile go together", "give both: the certificate and its private key")
    if not certfile:
        if not is_loopback(host):
            raise ConfigError(f"--host {host} would serve the page to the network without TLS",
                              "keep the default 127.0.0.1 (from elsewhere: ssh -L 8080:127.0.0.1:8080 HOST), or add "
                              "--certfile CERT.pem --keyfile KEY.pem")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS file {exc.filename or certfile} does not exist",
                          "check --certfile and --keyfile") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"the certificate {certfile} and key {keyfile} cannot be used: {exc}",
                          "give a PEM certificate and its unencrypted PEM private key") from None
    return context


def host_names(host: str) -> set[str]:
    """The names a browser may put in the Host header for a non-loopback address (loopback names always pass)."""
    if is_loopback(host):
        return set()
    names = {host, socket.gethostname(), socket.getfqdn()}
    if host in WILDCARDS:
        import psutil  # noqa: PLC0415

        names |= {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
                  if a.family in (socket.AF_INET, socket.AF_INET6)}
    return names


def serve(data_dir: str | Path, work_dir: str | Path, host: str = "127.0.0.1", port: int = 8080,
          open_browser: bool = False, certfile: str | None = None, keyfile: str | None = None) -> None:
    """Serve the page until interrupted. Blocks. Loopback unless ``host`` is given with a TLS certificate."""
    data, work = check_folders(data_dir, work_dir)
    port = check_port(port)
    guard = PageGuard(host, port, names=host_names(host), ssl_context=tls_context(host, certfile, keyfile))
    if not is_loopback(host):
        print(f"NOTE: serving on {host} over TLS: whoever has the address below (it carries this start's key) can "
              f"read {data}, write to {work} and start training runs.", file=sys.stderr)
    if not os.environ.get("DISPLAY"):
        # no X server: pick Mesa's offscreen EGL so VTK does not try (and warn about) X first
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from trame.app import get_server  # noqa: PLC0415 - heavy: only when serving

    from AutoSegWeb.app import AutoSegWebApp  # noqa: PLC0415

    server = get_server("autoseg-web", client_type="vue3")
    guard.attach(server)
    logging.getLogger("wslink.protocol").addFilter(closed_tab_filter)
    app = AutoSegWebApp(data, work, server=server, guard=guard)   # keep this reference for the server's lifetime
    # trame reads its options from our command line and TRAME_ARGS (another --host, --ssl, --fs-endpoints...):
    # it gets none, only the arguments below; TRAME_ARGS is back as it was once trame has parsed it
    saved = os.environ.get("TRAME_ARGS")
    os.environ["TRAME_ARGS"] = ""
    server.controller.on_server_bind.add(lambda _: _restore_env("TRAME_ARGS", saved))
    opener = _browser_file(guard.url) if open_browser else None
    if opener is not None:
        server.controller.on_server_ready.add(lambda **_: webbrowser.open(opener.as_uri()))
    print(f"AutoSegSearch page: {guard.url}  (data {data}, work {work})", flush=True)
    try:
        # timeout=0: wslink would stop the server (and a run going) 5 minutes after the last tab closed
        server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0,
                     disable_logging=True, exec_mode="main")
    finally:
        app.shutdown()
        if opener is not None:
            opener.unlink(missing_ok=True)


def closed_tab_filter(record: logging.LogRecord) -> bool:
    """Drop wslink's report of a reply to a tab that closed meanwhile (its check for a closed connection races
    with the close): a traceback in the server's log for a user closing a tab is noise, not an error."""
    text = record.getMessage()
    return "Cannot write to closing transport" not in text and "ClientConnectionResetError" not in text


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _browser_file(url: str) -> Path:
    """A private page (0600, in a 0700 folder under the home: snap browsers cannot read /tmp) that forwards to the
    address: the key never appears in the browser's command line, which every local user can list."""
    folder = Path.home() / ".cache" / "autoseg-web"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="open-page-", suffix=".html", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:      # mkstemp creates it 0600
        fh.write(f'<!doctype html><meta http-equiv="refresh" content="0; url={url}">'
                 f'<a href="{url}">AutoSegSearch</a>\n')
    return Path(name)
