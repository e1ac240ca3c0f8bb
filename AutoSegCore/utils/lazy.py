"""Package names loaded from their module on first use (PEP 562).

``AutoSegCore.data`` and ``AutoSegCore.proxy`` re-export their submodules' names for ``from AutoSegCore.data
import load_dataset``, but importing them all eagerly would load scikit-learn, torch and MONAI for a command that
needs none (``autoseg validate``, ``autoseg choices``).  The standard library documents the module ``__getattr__``
hook but has no builder of it; ``lazy_loader.attach`` (scientific-python) is one, but not worth a new dependency
in the engine that Slicer's own Python must install, for these few lines.
"""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose ``exports`` map submodule → names it defines."""
    where = {name: module for module, names in exports.items() for name in names}
    names = sorted(where)

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
