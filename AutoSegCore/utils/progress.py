"""Rich progress bars driven by the same events the front ends consume (stderr, so stdout can carry events)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from AutoSegCore.events import EventWriter

console = Console(stderr=True)


def _hide(progress: Progress) -> None:
    """Clear the bars when the command fails: its one-line error should stand alone, not under a frozen
    "0/20 0:00:06" that looks like work was done (a non-terminal console prints the bars' last state)."""
    for task in progress.tasks:
        progress.update(task.id, visible=False)
    progress.live.transient = True      # erased on a terminal; not printed at all to a file or pipe


@contextmanager
def epoch_progress(events: EventWriter, total: int, description: str) -> Iterator[Progress]:
    """A bar advanced by ``epoch`` events (uses the event's ``epochs`` as total when it differs)."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task(description, total=total, status="")

    def on_event(rec: dict) -> None:
        if rec["event"] == "epoch":
            vd = rec.get("val_dice")
            status = f"loss {rec['loss']:.3f}" + (f"  val Dice {vd:.3f}" if vd is not None else "")
            progress.update(task, completed=rec["epoch"], total=rec.get("epochs") or total, status=status)
        elif rec["event"] == "progress" and rec.get("fraction") is not None:
            progress.update(task, completed=rec["fraction"] * (progress.tasks[0].total or 1),
                            status=rec.get("message", ""))

    events.listeners.append(on_event)
    try:
        with progress:
            try:
                yield progress
            except BaseException:
                _hide(progress)
                raise
    finally:
        events.listeners.remove(on_event)


@contextmanager
def search_progress(events: EventWriter, total_trials: int | None) -> Iterator[Progress]:
    """Trials bar plus a bar for the epochs of the latest running trial."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
    trials = progress.add_task("trials", total=total_trials, status="")
    epochs = progress.add_task("epochs", total=1, status="")
    state = {"done": 0}

    def on_event(rec: dict) -> None:
        ev = rec["event"]
        if ev == "trial_finished":
            state["done"] += 1
            v = rec.get("value")
            shown = f"{v:.3f}" if isinstance(v, float) else str(v)
            progress.update(trials, completed=state["done"], status=f"#{rec['trial']} {rec['state']} {shown}")
        elif ev == "epoch" and rec.get("trial") is not None:
            vd = rec.get("val_dice")
            progress.update(epochs, completed=rec["epoch"], total=rec.get("epochs") or 1,
                            description=f"trial {rec['trial']}" if rec["trial"] >= 0 else "final training",
                            status=f"Dice {vd:.3f}" if vd is not None else "")
        elif ev == "log":           # the runner's notes: time limit reached, Ctrl-C summary, proxy-net choices
            progress.console.print(rec["message"], markup=False, highlight=False, soft_wrap=True)

    events.listeners.append(on_event)
    try:
        with progress:
            try:
                yield progress
            except BaseException:
                _hide(progress)
                raise
    finally:
        events.listeners.remove(on_event)
