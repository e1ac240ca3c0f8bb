"""Constants and page helpers shared by the browser tests (a module of its own: `from conftest import` is ambiguous
across folders)."""
from __future__ import annotations

import io
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

from shared_data import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
N_CASES = 10
SCREENSHOTS = REPO / "docs" / "screenshots"

try:
    import playwright.sync_api  # noqa: F401
    import trame_slicer  # noqa: F401
    MISSING = "" if Path(CHROMIUM).exists() else f"{CHROMIUM} not installed (apt-get install chromium)"
except ImportError as exc:
    MISSING = f"web extra not installed ({exc.name})"


def shot(page, name: str | None = None) -> np.ndarray:
    """Screenshot of the page as RGB array; saved to docs/screenshots/<name> when named."""
    png = page.screenshot()
    if name:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / name).write_bytes(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def open_panel(page, name: str, inner: str) -> None:
    if not page.locator(inner).is_visible():
        page.click(f"#panel-{name}")
        page.wait_for_selector(inner, state="visible")


def fill(page, selector: str, text: str) -> None:
    page.fill(selector, text)
    page.locator(selector).blur()


def server_log_problems(log_path) -> list[str]:
    return [line for line in log_path.read_text(errors="replace").splitlines()
            if "ERR|" in line or "Traceback" in line]


def keyed(url: str, path: str) -> str:
    """``path`` on the page's server with the key of the page's URL (for a client without the page's cookie)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
