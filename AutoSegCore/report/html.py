"""HTML rendering of the report: one file, inline CSS, images as data URIs, every text escaped.

Hand-written (a few f-strings) rather than a template engine: the page is small and static, and this keeps
the engine free of another dependency.  Nothing refers to an external URL, script or stylesheet.
"""
from __future__ import annotations

import json
from html import escape
from typing import Any, Iterable

from AutoSegCore.utils.durations import format_duration

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.2em;margin:0 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
section{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;margin:8px 0;font-size:.92em} th,td{border:1px solid #e0e0e0;padding:4px 10px;text-align:left}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:8px 0} .muted{color:#666;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0;font-size:.92em}
code,pre{background:#f0f2f5;border-radius:4px;padding:1px 4px;font-size:.9em} pre{padding:8px;overflow:auto}
.sig{color:#137333;font-weight:600} .grid{display:flex;flex-wrap:wrap;gap:12px}
"""


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers rounded for reading, None as an en dash, everything escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return ", ".join(fmt(v, digits) for v in value)
    if isinstance(value, dict) and all(isinstance(v, (int, float, str, bool)) or v is None for v in value.values()):
        return "<br>".join(f"{escape(str(k))}: {fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, (dict, list, tuple)):
        return escape(json.dumps(value))
    return escape(str(value))


duration = format_duration          # the report's tables write H.duration(seconds)


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], numeric: Iterable[int] = ()) -> str:
    nums = set(numeric)
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in nums else ''}>{c if isinstance(c, Raw) else fmt(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """Already-safe HTML (built here from escaped parts) that ``table`` must not escape again."""


def img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">' if uri else ""


def note(text: str | None) -> str:
    return f'<p class="note">{escape(text)}</p>' if text else ""


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>"
            f"<h1>{escape(title)}</h1><p class=\"muted\">{subtitle}</p>\n" + "\n".join(sections) +
            "\n</main></body></html>\n")
