"""JSON-lines event stream shared by the CLI, the Slicer module and the browser UI.

One object per line with at least ``event`` (one of ``EVENT_TYPES``) and ``time``.  Front ends never parse free
text; a misspelt event type would be silently ignored by them, so ``emit`` refuses it.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

from AutoSegCore.utils.io import json_safe

EVENT_TYPES = (
    "study_started", "trial_started", "epoch", "trial_finished", "artifact", "progress",
    "log", "error", "done", "forecast", "plan",
)


class EventWriter:
    """Writes events to a file, to stdout (``"-"``) or nowhere (``None``); also calls listeners."""

    def __init__(self, target: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._stream: IO[str] | None = None
        self._owns = False
        self.listeners: list[Callable[[dict], None]] = []
        if target == "-":
            self._stream = sys.stdout
        elif target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(target, "a", encoding="utf-8")
            self._owns = True

    @property
    def to_stdout(self) -> bool:
        return self._stream is sys.stdout

    def emit(self, event: str, **fields: Any) -> dict:
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event!r}; one of {EVENT_TYPES}")
        record = {"event": event, "time": time.time(), **json_safe(fields)}
        with self._lock:
            if self._stream is not None:
                self._stream.write(json.dumps(record) + "\n")
                self._stream.flush()
        for listener in list(self.listeners):
            listener(record)
        return record

    def close(self) -> None:
        if self._owns and self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NULL_EVENTS = EventWriter(None)


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Read complete event lines from ``path`` starting at byte ``offset``; returns (events, new offset).

    Partial trailing lines (a writer mid-flush) are left for the next call, so pollers never see half objects.
    """
    p = Path(path)
    if not p.exists():
        return [], offset
    with open(p, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    events, consumed = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        line = line.strip()
        if line:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events, offset + consumed
