"""Who may use the page, and from where: a key per start, Host and Origin on every request, one browser session.

The page drives the data folder, the work folder and the machine's processors, on a port that every local user and
every website the user has open can reach (a page may open a WebSocket or load an image on 127.0.0.1, and DNS
rebinding even lets a site read the answers).  So every HTTP request and WebSocket upgrade must

- name this server in its Host header (a loopback name with any port — SSH tunnels forward to another port —, or
  the bound name and port): a rebinding site's requests carry its own name;
- carry no Origin, or the page's own (scheme://Host): a cross-site WebSocket or fetch always sends its Origin;
- carry the key of this start (``?secret=``, the parameter trame's client reads and removes from the address bar)
  or the session cookie a request with the key received (HttpOnly, SameSite=Strict, one per port);

and trame's own WebSocket secret is that key too.  trame keeps one state for all its clients, so one browser
session (one cookie) owns the page: the first to connect claims it, and holds it while it has a connection open or
a run it started is going; any other session gets a one-line page saying so, no state and no WebSocket.  A new
owner gets a fresh page (``on_new_owner``), never the previous session's data.

Written by hand on aiohttp's middleware and wslink's hooks: trame has one shared secret (the public default
``wslink-secret``), no Host or Origin check and no notion of a browser session.
"""
from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections import OrderedDict

from aiohttp import web

SECRET_PARAM = "secret"
SESSION = web.RequestKey("autoseg_session", str)
BY_COOKIE = web.RequestKey("autoseg_by_cookie", bool)
MAX_SESSIONS = 64          # sessions minted by requests with the key; the oldest unused ones are forgotten
BUSY = ("AutoSegSearch is open in another browser session. Use that window, or close it (and wait for a run "
        "it started to end), then reload this page.")
_NUMBERISH = re.compile(r"^[0-9a-fA-FxXoObBeE.+-]*$")     # what trame's client would turn into a number
_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A key for one server start (256 random bits); never one that trame's client would read as a number."""
    while True:
        token = secrets.token_urlsafe(32)
        if not _NUMBERISH.match(token):
            return token


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` of a Host header, lower-case (IPv6 without brackets); None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if bracket and not rest else "x")
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, None
    if not name or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    return name, None if port is None else int(port)


class PageGuard:
    """The checks above for a server bound to ``host:port``; ``names`` are the further Host names it answers to
    (those of a non-loopback address). ``attach(server)`` installs them on a trame server before it starts."""

    def __init__(self, host: str, port: int, names=(), ssl_context=None, token: str | None = None) -> None:
        self.host, self.port, self.ssl_context = host, int(port), ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.token = token or new_token()
        self.cookie = f"autoseg-web-{self.port}"
        self.names = {n.lower().strip("[]") for n in (host, *names)}
        self._sessions: OrderedDict[str, None] = OrderedDict()
        self._clients: dict[str, str] = {}          # WebSocket client id -> session
        self._by_cookie: set[str] = set()           # clients whose upgrade came with the session cookie
        self.owner: str | None = None
        self._owner_clients: set[str] = set()
        self.run_session: str | None = None
        self._owned_before = False
        self.on_new_owner = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"{self.scheme}://{shown}:{self.port}/?{SECRET_PARAM}={self.token}"

    # ------------------------------------------------------------------------------------------------ HTTP
    def host_allowed(self, header: str | None) -> bool:
        parts = split_host(header) if header else None
        if parts is None:
            return False
        name, port = parts
        if is_loopback(name):
            return True
        return name in self.names and (port or (443 if self.scheme == "https" else 80)) == self.port

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        return origin is None or origin.lower() == f"{self.scheme}://{host.strip().lower()}"

    def _session_of(self, request) -> tuple[str | None, bool]:
        """(session, came with its cookie): the cookie's session, or a new one for a request carrying the key."""
        sid = request.cookies.get(self.cookie, "")
        if sid in self._sessions:
            return sid, True
        key = request.query.get(SECRET_PARAM, "")
        if key and hmac.compare_digest(key.encode(), self.token.encode()):
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = None
            for old in [s for s in self._sessions if s not in (sid, self.owner, self.run_session)][:-MAX_SESSIONS]:
                del self._sessions[old]
            return sid, False
        return None, False

    @web.middleware
    async def middleware(self, request, handler):
        host = request.headers.get("Host")
        if not self.host_allowed(host):
            return _refuse(403, f"this server answers for its own address only, not for Host {host!r}")
        if not self.origin_allowed(request.headers.get("Origin"), host):
            return _refuse(403, f"a request from another site ({request.headers.get('Origin')!r}) is refused")
        sid, by_cookie = self._session_of(request)
        if sid is None:
            return _refuse(403, "this page needs its key: open the address that 'autoseg gui' printed")
        if self.owner not in (None, sid) and not _asset(request.path):
            return _refuse(409, BUSY)
        request[SESSION], request[BY_COOKIE] = sid, by_cookie
        try:
            response = await handler(request)
        except web.HTTPException as exc:     # the root's redirect to index.html, a 404
            self._finish(exc, sid, by_cookie)
            raise
        except ConnectionResetError:         # a tab closed while its WebSocket was answered: nothing to answer
            return web.Response(status=499)
        return self._finish(response, sid, by_cookie)

    def _finish(self, response, sid: str, by_cookie: bool):
        if not response.prepared:            # a WebSocket's answer is already sent
            response.headers.update(_HEADERS)
            if not by_cookie:
                response.set_cookie(self.cookie, sid, path="/", httponly=True, samesite="Strict",
                                    secure=self.scheme == "https")
        return response

    # ------------------------------------------------------------------------------------------------ WebSocket
    def on_connect(self, request, client_id: str) -> None:
        self._clients[client_id] = request[SESSION]
        if request[BY_COOKIE]:
            self._by_cookie.add(client_id)

    def on_close(self, client_id: str) -> None:
        self._clients.pop(client_id, None)
        self._by_cookie.discard(client_id)
        self._owner_clients.discard(client_id)
        self._release_if_idle()

    async def validate_token(self, token, client_id: str) -> bool:
        """wslink's hello: the key (a browser that reloaded the page has only its cookie: trame's client removed the
        key from the address), and the page not owned by another session."""
        sid = self._clients.get(client_id)
        if sid is None:
            return False
        keyed = isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode())
        if not (keyed or client_id in self._by_cookie):
            return False
        if self.owner is None:
            self.owner = sid
            if self._owned_before and self.on_new_owner is not None:
                self.on_new_owner()
            self._owned_before = True
        if self.owner != sid:
            return False
        self._owner_clients.add(client_id)
        return True

    # ------------------------------------------------------------------------------------------------ runs
    def run_started(self) -> str | None:
        """The session starting a run (the owner: no other session reaches the page's actions)."""
        self.run_session = self.owner
        return self.owner

    def run_ended(self) -> None:
        self.run_session = None
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        if self.owner is not None and not self._owner_clients and self.run_session != self.owner:
            self.owner = None

    # ------------------------------------------------------------------------------------------------ trame
    def attach(self, server) -> None:
        """Install the checks when trame binds its aiohttp server (before it starts listening)."""

        def bind(wslink_server):
            wslink_server.app.middlewares.append(self.middleware)
            if self.ssl_context is not None:
                wslink_server.config["ssl"] = self.ssl_context
            protocol = server.protocol
            protocol.updateSecret(self.token)
            protocol.validateToken = self.validate_token
            connect, close = protocol.onConnect, protocol.onClose

            def on_connect(request, client_id):
                self.on_connect(request, client_id)
                connect(request, client_id)

            def on_close(client_id):
                self.on_close(client_id)
                close(client_id)

            protocol.onConnect, protocol.onClose = on_connect, on_close

        server.controller.on_server_bind.add(bind)


def _asset(path: str) -> bool:
    """trame's scripts and styles (public code): everything but the page, its WebSocket and the work folder."""
    return not (path in ("/", "/index.html", "/ws") or path.startswith("/results/"))


def _refuse(status: int, text: str):
    return web.Response(status=status, text=text + "\n", headers=_HEADERS)
