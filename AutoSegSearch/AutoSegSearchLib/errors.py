"""The module's error types: the engine's own when it is installed, same-shape stand-ins before that.

Both carry ``message`` and ``hint`` so the panels show "what is wrong — how to fix it" either way.
"""
from __future__ import annotations

try:
    from AutoSegCore.errors import ConfigError, DatasetError
except ImportError:  # inside Slicer before the engine is installed: same shape, so messages stay uniform
    class _AutoSegError(Exception):
        def __init__(self, message: str, hint: str = "") -> None:
            super().__init__(message)
            self.message, self.hint = message, hint

        def __str__(self) -> str:
            return f"{self.message} — {self.hint}" if self.hint else self.message

    class DatasetError(_AutoSegError):  # type: ignore[no-redef]
        pass

    class ConfigError(_AutoSegError):  # type: ignore[no-redef]
        pass
