"""Progress driven by the same events the front ends consume, on stderr (so stdout can carry events).

On a terminal: rich bars.  Otherwise (a log file, a pipe, CI), where rich would draw nothing until the end: one
plain, timestamped line per stage, per epoch (training), per finished trial (search) and per few cases
(prediction).  Never both on one stream: with stderr on a terminal and stdout into a file (``make demo > log``)
the terminal gets the bars and the file the lines.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from AutoSegCore.events import EventWriter

console = Console(stderr=True)
# a prediction prints a plain line per this many cases (and for the last), at least one a minute
PLAIN_CASE_LINES = 20
PLAIN_MIN_SECONDS = 60.0


class PlainLines:
    """Plain progress lines (``[  12 s] text``) for a log or a pipe, from the events of one command."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.stage: str | None = None
        self.trials_done = 0
        self.last_case_line = -math.inf

    def line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(f"[{time.monotonic() - self.start:5.0f} s] {text}", file=stream, flush=True)

    def enter(self, stage: str, text: str | None = None) -> None:
        """A line when the work enters a new stage (not for every event of it)."""
        if stage != self.stage:
            self.stage = stage
            self.line(text or stage)

    def on_event(self, rec: dict) -> None:
        ev = rec.get("event")
        if ev == "study_started":
            what = rec.get("kind") or "search"
            where = rec.get("data") or rec.get("study") or rec.get("model") or ""
            self.enter(f"{what} started", f"{what}: started {where}".rstrip())
        elif ev == "epoch":
            trial, member = rec.get("trial"), rec.get("member")
            if trial is not None:                          # a search trial's epochs: the log is never silent
                self.enter("trials", "search: trials running")
            else:
                self.enter("final training" if member is not None else "training")
            vd = rec.get("val_dice")
            total = f"/{rec['epochs']}" if rec.get("epochs") else ""
            loss = rec.get("loss")
            what = (f"search: trial {trial}" if trial is not None else
                    "final training" if member is not None else "training")
            self.line(f"{what}: epoch {rec.get('epoch')}{total}"
                      + (f" loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
                      + (f" val Dice {vd:.4f}" if isinstance(vd, (int, float)) else "")
                      + (f" ({rec['seconds']:.0f} s)" if isinstance(rec.get("seconds"), (int, float)) else ""))
        elif ev == "trial_started":
            self.enter("trials", "search: trials running")
        elif ev == "trial_finished":
            self.trials_done += 1
            v = rec.get("value")
            shown = f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))
            why = f": {' '.join(str(rec['error']).split())[:160]}" if rec.get("error") else ""
            self.line(f"search: trial {rec.get('trial')} {str(rec.get('state', '')).lower()} {shown} "
                      f"({self.trials_done} finished){why}")
        elif ev == "progress":
            self._progress(rec)
        elif ev in ("log", "forecast") and (rec.get("message") or rec.get("text")):
            self.line(str(rec.get("message") or rec.get("text")))

    def _progress(self, rec: dict) -> None:
        stage, done, total = rec.get("stage"), rec.get("done"), rec.get("total")
        if stage == "checking":                            # prediction: one line when every input is checked
            if done == total:
                self.line(f"checked {total} input(s)")
            return
        if stage == "predicting" and isinstance(done, int) and isinstance(total, int):
            every = max(1, math.ceil(total / PLAIN_CASE_LINES))
            now = time.monotonic()
            if done % every == 0 or done == total or now - self.last_case_line >= PLAIN_MIN_SECONDS:
                self.last_case_line = now
                self.line(f"predicting: {done}/{total} cases done (last: {rec.get('case', '?')})")
            return
        if str(rec.get("message", "")).endswith("trials finished"):
            return                                          # the search's count: each trial has its own line
        if rec.get("message"):                              # a stage of its own (final training, report …)
            self.enter(f"progress {rec['message']}", str(rec["message"]))
        elif stage and done == total:
            self.line(f"{stage}: {done}/{total}")


@contextmanager
def _listening(progress: Progress, events: EventWriter, on_event) -> Iterator[None]:
    """``progress`` on screen while ``on_event`` hears ``events``; hidden when the command fails (``_hide``)."""
    events.listeners.append(on_event)
    try:
        with progress:
            try:
                yield
            except BaseException:
                _hide(progress)
                raise
    finally:
        events.listeners.remove(on_event)


@contextmanager
def plain_progress(events: EventWriter, stream=None) -> Iterator[None]:
    """Plain progress lines for the events emitted inside the block (what the bars show, for a log)."""
    plain = PlainLines(stream)
    events.listeners.append(plain.on_event)
    try:
        yield None
    finally:
        events.listeners.remove(plain.on_event)


def on_terminal() -> bool:
    """Whether the rich bars can draw (stderr is a terminal); else the plain lines are used."""
    return console.is_terminal


def stdout_lines(events: EventWriter) -> PlainLines | None:
    """Plain lines for stdout when the bars draw on a terminal but stdout goes to a file or pipe
    (``make demo > log``): the log shows where the work is, the terminal only the bars.  None when stdout is a
    terminal too, or carries the events (``--events -``)."""
    try:
        redirected = not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return None
    return PlainLines(sys.stdout) if redirected and not events.to_stdout else None


def _hide(progress: Progress) -> None:
    """Clear the bars when the command fails: its one-line error should stand alone, not under a frozen
    "0/20 0:00:06" that looks like work was done (a non-terminal console prints the bars' last state)."""
    for task in progress.tasks:
        progress.update(task.id, visible=False)
    progress.live.transient = True      # erased on a terminal; not printed at all to a file or pipe


@contextmanager
def epoch_progress(events: EventWriter, total: int, description: str) -> Iterator[Progress]:
    """A bar advanced by ``epoch`` events (uses the event's ``epochs`` as total when it differs); plain lines
    when stderr is not a terminal."""
    if not on_terminal():
        with plain_progress(events) as nothing:
            yield nothing
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task(description, total=total, status="")

    log = stdout_lines(events)

    def on_event(rec: dict) -> None:
        if log is not None:
            log.on_event(rec)
        if rec["event"] == "epoch":
            vd = rec.get("val_dice")
            status = f"loss {rec['loss']:.3f}" + (f"  val Dice {vd:.3f}" if vd is not None else "")
            progress.update(task, completed=rec["epoch"], total=rec.get("epochs") or total, status=status)
        elif rec["event"] == "progress" and rec.get("fraction") is not None:
            progress.update(task, completed=rec["fraction"] * (progress.tasks[0].total or 1),
                            status=rec.get("message", ""))

    with _listening(progress, events, on_event):
        yield progress


@contextmanager
def search_progress(events: EventWriter, total_trials: int | None) -> Iterator[Progress]:
    """Trials bar plus a bar for the epochs of the latest running trial; plain lines when stderr is not a
    terminal."""
    if not on_terminal():
        with plain_progress(events) as nothing:
            yield nothing
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
    trials = progress.add_task("trials", total=total_trials, status="")
    epochs = progress.add_task("epochs", total=1, status="")
    state = {"done": 0}

    log = stdout_lines(events)

    def on_event(rec: dict) -> None:
        if log is not None:
            log.on_event(rec)
        ev = rec["event"]
        if ev == "trial_finished":
            state["done"] += 1
            v = rec.get("value")
            shown = f"{v:.3f}" if isinstance(v, float) else str(v)
            progress.update(trials, completed=state["done"], status=f"#{rec['trial']} {rec['state']} {shown}")
        elif ev == "epoch" and (rec.get("trial") is not None or rec.get("member") is not None):
            vd = rec.get("val_dice")
            progress.update(epochs, completed=rec["epoch"], total=rec.get("epochs") or 1,
                            description=f"trial {rec['trial']}" if rec.get("trial") is not None else "final training",
                            status=f"Dice {vd:.3f}" if vd is not None else "")
        elif ev in ("log", "forecast"):   # the runner's notes (time limit, Ctrl-C, proxy net), the cost forecast
            progress.console.print(rec.get("message") or rec.get("text", ""), markup=False, highlight=False,
                                   soft_wrap=True)

    with _listening(progress, events, on_event):
        yield progress


@contextmanager
def predict_progress(events: EventWriter) -> Iterator[None]:
    """Cases bar (checking, then predicting) plus the notes (which folder gave what, skipped cases, the summary);
    plain lines when stderr is not a terminal."""
    if not on_terminal():
        with plain_progress(events) as nothing:
            yield nothing
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task("checking", total=None, status="")

    log = stdout_lines(events)

    def on_event(rec: dict) -> None:
        if log is not None:
            log.on_event(rec)
        if rec["event"] == "progress" and rec.get("stage") in ("checking", "predicting"):
            progress.update(task, description=rec["stage"], completed=rec.get("done", 0), total=rec.get("total"),
                            status=rec.get("case", ""))
        elif rec["event"] == "log" and rec.get("message"):
            progress.console.print(rec["message"], markup=False, highlight=False, soft_wrap=True)

    with _listening(progress, events, on_event):
        yield None
