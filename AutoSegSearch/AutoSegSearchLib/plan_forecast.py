"""Plan & forecast before Start: the dataset's plan and the search's cost forecast, from one engine child process.

Why ``autoseg search --forecast-only`` and not two commands: it runs the very set-up Start will run (case selection,
fingerprint, the plan the trials are merged over, a representative net timed at proxy fidelity), so the panel shows
what the search will do, then stops before the first trial.  Why a child process: on a CPU planning times real
training steps (seconds to tens of seconds) and needs torch, which Slicer's process must never import; here only
``plan.json`` and ``forecast.json`` are read.  A newer request supersedes an older one: the older child is stopped
and its result is never delivered, so a slow answer to old settings cannot overwrite a newer one.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .process import EngineProcess, ProcessState
from .run_parameters import SearchParameters


@dataclass
class PlanForecastResult:
    """What one request's child wrote: the plan and the forecast (either may be missing, ``error`` says why)."""

    folder: Path
    plan: dict | None = None
    forecast: dict | None = None
    error: str = ""
    key: object = None                  # the settings it was asked for (see PlanForecast.request)
    seconds: float | None = None        # how long the child ran

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, value, why) per line of the read-only panel: the plan's choices, then the forecast."""
        return _plan_rows(self.plan) + _forecast_rows(self.forecast, self.error)

    def summary(self) -> str:
        """One status line: what was planned for, and how long asking took."""
        if self.plan is None:
            return f"no plan: {self.error or 'the engine wrote none'}"
        fp = self.plan.get("fingerprint_summary", {})
        took = f" (asked in {self.seconds:.0f} s)" if self.seconds is not None else ""
        return (f"plan for {self.plan.get('dataset')} ({fp.get('num_cases', '?')} cases, {fp.get('modality', '?')}) "
                f"on {self.plan.get('device')}{took}" + ("" if self.forecast else " — no forecast"))


def read_plan_forecast(folder: str | Path) -> PlanForecastResult:
    """The plan and forecast an ``autoseg search --forecast-only`` run wrote into ``folder`` (plain JSON)."""
    from AutoSegCore.search.search_dir import SearchDir  # noqa: PLC0415 - the engine's layout of that folder

    folder = Path(folder)
    found = {}
    for name, path in (("plan", SearchDir(folder).plan), ("forecast", SearchDir(folder).forecast)):
        try:
            found[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found[name] = None
    return PlanForecastResult(folder, found["plan"], found["forecast"])


class PlanForecast:
    """One panel's Plan & forecast: at most one child is current; :meth:`request` stops the one before.

    ``engine`` is the panel logic's :class:`~.engine_commands.EngineCommands`, which starts the child;
    ``on_result(PlanForecastResult)`` runs from :meth:`poll`, in the caller's thread, once per request that was
    neither superseded nor cancelled.  The front end polls with its own timer or event loop, as for every child.
    Folders of superseded requests and of earlier results are removed (each holds a preprocessing cache).
    """

    def __init__(self, engine, on_result: Callable[[PlanForecastResult], None]) -> None:
        self.engine, self.on_result = engine, on_result
        self.proc: EngineProcess | None = None
        self.key: object = None                 # the settings of the latest request
        self.shown: PlanForecastResult | None = None
        self._retiring: list[tuple[EngineProcess, Path]] = []
        self._count = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    @property
    def active(self) -> bool:
        """A child is current or still stopping: the front end keeps polling."""
        return self.running or bool(self._retiring)

    def stale(self, key: object) -> bool:
        """The panel shows (or waits for) an answer to other settings than ``key``."""
        return self.key is not None and key != self.key

    def request(self, data_dir: str | Path, work_dir: str | Path, params: SearchParameters, *, key: object = None,
                env: dict[str, str] | None = None) -> EngineProcess:
        """Plan and forecast the search ``params`` describes on ``data_dir`` in a new folder under ``work_dir``."""
        self._count += 1
        folder = Path(work_dir) / f"plan-forecast-{time.strftime('%Y%m%d-%H%M%S')}-{self._count}"
        args = params.forecast_args(data_dir, folder)
        self.cancel()
        self.key = key
        self.proc = self.engine.start_engine(args, folder, on_finished=self._finished, env=env)
        return self.proc

    def cancel(self) -> None:
        """Stop the current child at once (SIGTERM to its tree: a forecast has no trial to checkpoint)."""
        if self.running:
            self.proc.request_cancel(grace=0)
            self._retiring.append((self.proc, self.proc.events_path.parent))
        self.proc = None

    def poll(self) -> None:
        """Never blocks: follows the current child and finishes stopping superseded ones."""
        if self.proc is not None:
            self.proc.poll()
        for proc, folder in list(self._retiring):
            proc.poll()
            if not proc.running:
                self._retiring.remove((proc, folder))
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Stop everything and wait (the panel or the server is going away)."""
        self.cancel()
        for proc, _ in self._retiring:
            proc.cancel(grace=0)
        self.poll()

    def _finished(self, proc: EngineProcess) -> None:
        if proc is not self.proc or proc.state == ProcessState.CANCELLED:
            return
        result = read_plan_forecast(proc.events_path.parent)
        if proc.state != ProcessState.SUCCEEDED or result.forecast is None:
            # the engine's error (message — hint); else its note why the forecast failed; else the log's tail
            plain = proc.error is None and result.plan is not None and _last_log(proc)
            result.error = plain or proc.failure_message().replace("\nHint: ", " — ")
        result.key = self.key
        if proc.started_at and proc.ended_at:
            result.seconds = proc.ended_at - proc.started_at
        if self.shown is not None and self.shown.folder != result.folder:
            shutil.rmtree(self.shown.folder, ignore_errors=True)
        self.shown = result
        self.on_result(result)


def _last_log(proc: EngineProcess) -> str:
    logs = proc.events_of("log")
    return str(logs[-1].get("message", "")) if logs else ""


# ---------------------------------------------------------------------------------------------------- rows
def _times(values) -> str:
    return "×".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _plan_rows(plan: dict | None) -> list[tuple[str, str, str]]:
    choices = (plan or {}).get("choices", {})
    return [(label, show(choices[key]["value"]), str(choices[key].get("why", "")))
            for label, key, show in PLAN_SHOWN if key in choices]


PLAN_SHOWN = (   # (row, the plan's choice, its value as text)
    ("target spacing", "target_spacing", lambda v: f"{_times(v)} mm"),
    ("patch", "patch_size", _times),
    ("batch", "batch_size", str),
    ("network", "network", lambda v: f"depth {v['depth']}, {v['channels']} channels, strides "
                                     + " ".join(_times(s) for s in v["strides"])),
    ("normalisation", "normalization",
     lambda v: v["normalization"] + (", inside the nonzero mask" if v.get("zscore_nonzero") else "")),
    ("epochs (plan)", "epochs", lambda v: f"{v['steps_per_epoch']} steps per epoch, validation every "
                                          f"{v['val_every']}, {_duration(v['time_limit'])} budget"),
)


def _forecast_rows(f: dict | None, error: str) -> list[tuple[str, str, str]]:
    if not f:
        return [("forecast", "–", error)]
    measured = (f.get("measured") or {}).get("proxy") or {}
    step = f"one step {measured['step_seconds']:.2f} s" if measured.get("step_seconds") else "steps"
    budget = f.get("time_budget")
    trials = (f"≈ {f.get('trials')} fit in {_duration(budget)}" if budget is not None else str(f.get("trials")))
    final = f.get("final") or {}
    return [
        ("trials", trials, f"{f.get('jobs', 1)} at a time; {f.get('text', '')}"),
        ("per trial", f"≈ {_duration(f.get('trial_seconds'))} ({f.get('epochs')} epoch(s) × "
                      f"{f.get('steps_per_epoch')} steps)",
         f"a representative net of the space, timed on this machine ({step}) + validation + start-up"),
        ("search", f"≈ {_duration(f.get('search_seconds'))}" + (" at most" if f.get("upper_bound") else ""),
         "the time budget" if budget is not None else "pruned trials end early: an upper bound"
         if f.get("upper_bound") else "trials × per trial"),
        ("final training", f"≈ {_duration(f.get('final_seconds'))}" if f.get("final_seconds") else "none",
         f"{final.get('members', 1)} member(s), {final.get('epochs', '?')} epoch(s) × "
         f"{final.get('steps_per_epoch', '?')} steps" if final.get("seconds") else "no final training"),
        ("total", f"≈ {_duration(f.get('total_seconds'))}", str(f.get("text", ""))),
    ]


def _duration(seconds) -> str:
    # imported here: inside Slicer the engine may be installed only after this module is loaded (torch-free)
    from AutoSegCore.utils.durations import format_duration  # noqa: PLC0415

    return format_duration(seconds, rough=True)
