"""Storage URLs without their secrets: what is stored, shown and handed to child processes.

A study's URL may carry a password (``postgresql://u:pw@host/db``, or ``…?password=pw``).  It is written
nowhere: ``search.json``, the trial specs, the study's ``settings`` attribute, events, logs and error messages get
:func:`redact`'s form (SQLAlchemy's ``render_as_string(hide_password=True)``: ``u:***@``, and ``password=***``
in the query), and the password reaches the trial processes in their environment (``PASSWORD_ENV``), never a
file.  :func:`connect_url` turns a redacted (or password-less) URL into the one to connect with: the password from
``PASSWORD_ENV`` when set, else none at all, so that libpq reads ``PGPASSWORD`` / ``~/.pgpass`` itself.

Only SQLAlchemy and ``re``: the Slicer module and the folder lock import this without Optuna.  The text fallback
is hand-written because a URL SQLAlchemy cannot parse (a typo, an unescaped ``@``) must not be printed with its
password either.
"""
from __future__ import annotations

import os
import re
from urllib.parse import quote, quote_plus

PASSWORD_ENV = "AUTOSEG_STORAGE_PASSWORD"
HIDDEN = "***"
# query parameters that carry a secret (libpq's password/sslpassword, and the usual token names)
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret", "token", "auth_token", "access_token",
               "api_key", "apikey")
_QUERY_SECRET = re.compile(r"(?i)(^|[?&;\s'\"(])(" + "|".join(SECRET_KEYS) + r")=([^&\s;'\")]*)")
# [scheme://]user:password@host in one whitespace-free token; the password runs to the token's last '@'
_USERINFO = re.compile(r"^(.*?//|[('\"]?)([^/:@\s]*):(.*)@([^@]*)$")


def _parse(url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError, AttributeError):
        return None


def _hide_userinfo(text: str) -> str:
    def token(tok: str) -> str:
        if "@" not in tok or tok.lower().startswith(("sqlite:", "'sqlite:", '"sqlite:')):
            return tok
        m = _USERINFO.match(tok)
        if not m or m.group(3) == HIDDEN:
            return tok
        return f"{m.group(1)}{m.group(2)}:{HIDDEN}@{m.group(4)}"

    return "".join(token(part) for part in re.split(r"(\s+)", text))


def _hide_query(text: str) -> str:
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}={HIDDEN}", text)


def redact(url: str | None) -> str | None:
    """``url`` with every password hidden (``u:***@``, ``password=***``); a URL without one comes back unchanged,
    a malformed one is redacted as text."""
    if not url:
        return url
    url = str(url)
    u = _parse(url)
    if u is not None and u.drivername.startswith("sqlite"):
        return _hide_query(url)
    if u is None:
        return _hide_query(_hide_userinfo(url))
    if u.password is None:
        return _hide_query(url)
    # an unescaped '@' in the password: SQLAlchemy ends it at the first one, the text rule at the last
    return _hide_query(_hide_userinfo(u.render_as_string(hide_password=True)))


def password_of(url: str | None) -> str | None:
    """The secret ``url`` carries (its password, else a secret query parameter); None when it has none or it is
    hidden."""
    u = _parse(str(url)) if url else None
    if u is None:
        return None
    if u.password not in (None, "", HIDDEN):
        return str(u.password)
    for key, value in u.query.items():
        values = value if isinstance(value, tuple) else (value,)
        if key.lower() in SECRET_KEYS and values and values[0] not in ("", HIDDEN):
            return str(values[0])
    return None


def child_env(url: str | None) -> dict[str, str]:
    """The environment a child process needs to open ``redact(url)``: the password, if ``url`` has one."""
    secret = password_of(url)
    return {PASSWORD_ENV: secret} if secret else {}


def split_password(url: str | None) -> tuple[str | None, dict[str, str]]:
    """``(redact(url), child_env(url))``: what to put on a child's command line, and in its environment."""
    return redact(url), child_env(url)


def connect_url(url: str) -> str:
    """The URL to connect with: a hidden password (``***``) or, with a user name, a missing one is taken from
    ``PASSWORD_ENV``; without it a hidden one is dropped (libpq then reads ``PGPASSWORD`` / ``~/.pgpass``)."""
    u = _parse(url)
    if u is None or u.drivername.startswith("sqlite"):
        return url
    secret = os.environ.get(PASSWORD_ENV) or None
    changed = False
    if u.password == HIDDEN or (u.password is None and u.username and secret):
        u, changed = u._replace(password=secret), True        # URL.set() cannot set None
    hidden = [k for k, v in u.query.items() if k.lower() in SECRET_KEYS and HIDDEN in (v if isinstance(v, tuple) else (v,))]
    if hidden:
        query = {k: v for k, v in u.query.items() if k not in hidden}
        if secret:
            query.update({k: secret for k in hidden})
        u, changed = u.set(query=query), True
    return u.render_as_string(hide_password=False) if changed else url


def scrub(text: str, *urls: str | None) -> str:
    """``text`` (an error message) without the secrets of ``urls`` or any URL-shaped password."""
    text = str(text)
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact(url) or "")
        secret = password_of(url)
        if secret is None and _parse(url) is None:            # malformed: the text rule's password
            m = _USERINFO.match(url.strip())
            secret = m.group(3) if m and m.group(3) != HIDDEN else None
        if secret and len(secret) >= 4:
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, HIDDEN)
    return _hide_query(_hide_userinfo(text))
