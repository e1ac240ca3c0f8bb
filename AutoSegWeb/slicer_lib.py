"""The Slicer module's Qt-free logic (AutoSegSearch/AutoSegSearchLib), imported in place — one copy of the logic.

The browser front end drives exactly the same Logic, EngineProcess and RunProgress as the desktop module; they
live beside this package in the source tree (AutoSegSearch/AutoSegSearchLib), so that folder is put on sys.path.
"""
from __future__ import annotations

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "AutoSegSearch"
if not (MODULE_DIR / "AutoSegSearchLib" / "logic.py").is_file():  # pragma: no cover - broken checkout
    raise ImportError(f"AutoSegSearchLib not found in {MODULE_DIR}: the browser front end needs the source tree")
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from AutoSegSearchLib.logic import (PROXY_METHODS, TTA_CHOICES, AutoSegSearchLogic,  # noqa: E402
                                    available_spaces, available_strategies)
from AutoSegSearchLib.process import EngineProcess, ProcessState  # noqa: E402
from AutoSegSearchLib.progress import RunProgress  # noqa: E402

__all__ = ["AutoSegSearchLogic", "EngineProcess", "ProcessState", "RunProgress", "PROXY_METHODS", "TTA_CHOICES",
           "available_spaces", "available_strategies"]
