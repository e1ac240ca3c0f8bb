"""Constants shared by the browser tests (a module of its own: `from conftest import` is ambiguous across folders)."""
from __future__ import annotations

from pathlib import Path

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
