"""Exception types for user mistakes: the CLI prints them as one line plus a hint, never a traceback."""
from __future__ import annotations


class AutoSegError(Exception):
    """A problem the user can fix. `message` names the file/value; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class DatasetError(AutoSegError):
    """Invalid or unreadable input dataset."""


class ConfigError(AutoSegError):
    """Invalid configuration / search-space file or option."""


class StorageError(AutoSegError):
    """Study storage unreachable or corrupt."""
