"""Engine events -> what the Run and Results panels show (trial rows, progress fraction, status, artifacts).

Kept apart from the Widget so that the desktop module and the browser front end share one interpretation of the
event stream, and so that it is tested headless against real engine events.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class TrialRow:
    trial: int
    params: dict = field(default_factory=dict)
    value: float | list | None = None
    state: str = "running"

    def cells(self) -> tuple[str, str, str, str]:
        """The four table cells: trial, params, value, state."""
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        if isinstance(self.value, (list, tuple)):
            value = " / ".join(_short(v) for v in self.value)
        else:
            value = "" if self.value is None else _short(self.value)
        return str(self.trial), params, value, self.state


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass
class RunProgress:
    """Folds events into display state. ``update(event)`` returns the trial number whose row changed, or None."""

    trials: dict[int, TrialRow] = field(default_factory=dict)
    fraction: float = 0.0
    status: str = "idle"
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    done: dict | None = None
    last_epoch: dict | None = None
    forecast: str | None = None           # the search's cost forecast line (a ``forecast`` event), kept all run

    def update(self, event: dict) -> int | None:
        kind = event.get("event")
        trial = event.get("trial")
        if kind == "study_started":
            self.status = f"started {event.get('kind', 'study')}"
        elif kind == "trial_started" and trial is not None:
            self.trials[trial] = TrialRow(trial, dict(event.get("params") or {}))
            self.status = f"trial {trial} running"
            return trial
        elif kind == "epoch":
            self.last_epoch = event
            dice = event.get("val_dice")
            member = event.get("member")
            where = (f"trial {trial}, " if trial is not None else
                     "final training, " if member is not None else "")
            total = f"/{event['epochs']}" if event.get("epochs") else ""
            self.status = (f"{where}epoch {event.get('epoch')}{total}: loss {_short(event.get('loss'))}"
                           + (f", val Dice {_short(dice)}" if dice is not None else ""))
            if trial is None and member is None and event.get("epochs"):
                self.fraction = max(self.fraction, float(event["epoch"]) / float(event["epochs"]))
        elif kind == "trial_finished" and trial is not None:
            row = self.trials.setdefault(trial, TrialRow(trial))
            row.params = dict(event.get("params") or row.params)
            row.value = event.get("value", event.get("values"))
            row.state = str(event.get("state", "complete")).lower()
            # stopped by the engine, not a bad config: the event's requeued flag (event logs from before it: the
            # error's " re-queued" suffix)
            if event.get("requeued") or str(event.get("error", "")).endswith("re-queued"):
                row.state = "stopped, re-queued"
            self.status = f"trial {trial} {row.state}"
            return trial
        elif kind == "forecast" and event.get("text"):      # before the first trial: expected wall-clock
            self.forecast = self.status = str(event["text"])
        elif kind == "log" and event.get("message"):     # the engine's notes: time limit reached, Ctrl-C summary
            self.status = str(event["message"])
        elif kind == "progress":
            if event.get("fraction") is not None:
                self.fraction = float(event["fraction"])
            elif event.get("total"):                     # proxy selection: {stage, done, total}
                self.fraction = float(event.get("done", 0)) / float(event["total"])
            if event.get("message"):
                self.status = str(event["message"])
            elif event.get("stage"):
                self.status = f"{event['stage']}: {event.get('done', '?')}/{event.get('total', '?')}"
        elif kind == "artifact" and event.get("kind"):
            self.artifacts[str(event["kind"])] = str(event.get("path", ""))
        elif kind == "error" and str(event.get("message", "")).startswith("interrupted"):
            # Ctrl-C, Cancel or a stop signal ("interrupted (SIGTERM)": a cancel escalated while the engine was
            # still stopping): not a failure; a search's summary ("interrupted: …") came just before as a log
            if not self.status.startswith("interrupted"):
                self.status = str(event["message"]) + (f" — {event['hint']}" if event.get("hint") else "")
        elif kind == "error":
            self.error = str(event.get("message", "engine error"))
            if event.get("hint"):
                self.error += f" — {event['hint']}"
            self.status = "failed: " + self.error
        elif kind == "done":
            self.done = event
            self.fraction = 1.0
            self.status = "finished"
        return None

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [self.trials[t].cells() for t in sorted(self.trials)]
