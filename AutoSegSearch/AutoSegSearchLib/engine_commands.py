"""The engine's command lines and child processes: what the panels run, built from plain values and checked.

No MRML here: every method turns panel values into ``autoseg`` arguments (raising ConfigError on a bad value) or
runs them as a child process (:mod:`.process`), so the same calls serve the desktop app, the browser and scripts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import ConfigError, DatasetError
from .process import EngineProcess, ProcessState

# what the panels offer; the engine's own lists win when it is installed (see available_spaces/strategies)
SPACES = ("unet-pipeline", "unet-recipe", "proxy-hpo", "segnas", "segnas4", "segnas7", "emonas")
STRATEGIES = ("random", "tpe", "nsga2", "bohb", "rl", "crs", "moead")
PROXY_METHODS = ("mi", "ncc", "random")
# "Test-time flips" choices → predict_args(tta=): None keeps the model folder's own decision (a search's best/
# keeps flips only if they scored higher on validation); True/False force them (`--tta` / `--no-tta`).
TTA_CHOICES = {"as the model decided": None, "on": True, "off": False}


def available_spaces() -> list[str]:
    try:
        from AutoSegCore.spaces import list_spaces
    except ImportError:
        return list(SPACES)
    return list_spaces()


def available_strategies() -> list[str]:
    try:
        from AutoSegCore.strategies.registry import list_strategies
    except ImportError:
        return list(STRATEGIES)
    return list_strategies()


class EngineCommands:
    """Arguments of ``autoseg proxy|search|train|predict`` and running them (``self.python``: the interpreter)."""

    python: str | None = None

    def proxy_args(self, data_dir: str | Path, out_dir: str | Path, method: str = "mi", roi: bool = True,
                   budget: float | int = 0.25, preview: bool = True, device: str | None = None,
                   cache_dir: str | Path | None = None) -> list[str]:
        """Arguments of ``autoseg proxy`` (without the python prefix and --events)."""
        if method not in PROXY_METHODS:
            raise ConfigError(f"proxy method {method!r} is unknown", f"use one of {', '.join(PROXY_METHODS)}")
        if not (isinstance(budget, (int, float)) and budget > 0):
            raise ConfigError(f"proxy budget {budget!r} must be positive",
                              "give a case count (e.g. 10) or a fraction (e.g. 0.25)")
        args = ["proxy", str(data_dir), "--method", method, "--roi", "label" if roi else "none",
                "--budget", str(budget), "--out", str(out_dir)]
        if device and device != "auto":
            args += ["--device", device]
        if cache_dir:
            args += ["--cache-dir", str(cache_dir)]
        return args + (["--preview"] if preview else [])

    @staticmethod
    def proxy_data_spec(method: str = "mi", roi: bool = True, budget: float | int = 0.25) -> str:
        """``--proxy-data`` value of ``autoseg search``, e.g. ``mi+roi:0.25``."""
        return f"{method}{'+roi' if roi else ''}:{budget}"

    @staticmethod
    def budget_value(value: float, unit: str) -> float | int:
        """The panel's budget (a percentage or a case count) as the engine wants it (fraction or count)."""
        if unit.startswith("%"):
            if not 0 < value <= 100:
                raise ConfigError(f"proxy budget {value}% is outside 0–100%", "e.g. 25 %")
            return round(value / 100.0, 4)
        if value < 1:
            raise ConfigError(f"proxy budget of {value} cases is less than one", "e.g. 10 cases")
        return int(value)

    def search_args(self, data_dir: str | Path, out_dir: str | Path, space: str = "unet-pipeline",
                    strategy: str = "random", trials: int | None = 20, proxy_data: str | None = None,
                    proxy_net: str | None = None, storage: str | None = None, time_minutes: float | None = None,
                    device: str | None = None, epochs: int | None = None, min_epochs: int | None = None,
                    steps_per_epoch: int | None = None, final: bool = True, final_epochs: int | None = None,
                    final_time_minutes: float | None = None, seed: int | None = None,
                    extra: Iterable[str] = ()) -> list[str]:
        """Arguments of ``autoseg search``. A time budget replaces the trial count (the engine takes one);
        ``final_time_minutes`` is the final training's own wall-clock budget (its lr schedule ends on it)."""
        if time_minutes:
            if time_minutes <= 0:
                raise ConfigError(f"time limit {time_minutes!r} min must be positive", "e.g. 60 minutes")
        elif not (isinstance(trials, int) and trials >= 1):
            raise ConfigError(f"number of trials {trials!r} must be a positive integer", "e.g. 20")
        if final_time_minutes is not None and not final_time_minutes > 0:
            raise ConfigError(f"final training time {final_time_minutes!r} min must be positive", "e.g. 60 minutes")
        args = ["search", str(data_dir), "--space", space, "--strategy", strategy, "--out", str(out_dir)]
        args += ["--time", f"{time_minutes:g}m"] if time_minutes else ["--trials", str(trials)]
        optional = (("--proxy-data", proxy_data), ("--proxy-net", proxy_net), ("--storage", storage),
                    ("--epochs", epochs), ("--min-epochs", min_epochs), ("--steps-per-epoch", steps_per_epoch),
                    ("--final-epochs", final_epochs), ("--seed", seed))
        for flag, value in optional:
            if value not in (None, "", "full", "none"):
                args += [flag, str(value)]
        if device and device != "auto":
            args += ["--device", device]
        if final_time_minutes and final:
            args += ["--final-time", f"{final_time_minutes:g}m"]
        if not final:
            args.append("--no-final")
        return args + list(extra)

    @staticmethod
    def best_of(summary: dict) -> tuple[float | None, dict]:
        """(best objective value, its parameters) from ``summary.json`` or the search's ``done`` event."""
        best = summary.get("best") or {}
        return best.get("value"), dict(best.get("params") or {})

    def train_args(self, data_dir: str | Path, model_dir: str | Path, config: str | Path | None = None,
                   epochs: int | None = None, steps_per_epoch: int | None = None,
                   device: str | None = None) -> list[str]:
        """Arguments of ``autoseg train`` (one configuration, e.g. to retrain the best one on all cases)."""
        args = ["train", str(data_dir), "--out", str(model_dir)]
        if config:
            args += ["--config", str(config)]
        if epochs:
            args += ["--epochs", str(epochs)]
        if steps_per_epoch:
            args += ["--steps-per-epoch", str(steps_per_epoch)]
        if device and device != "auto":
            args += ["--device", device]
        return args

    def predict_args(self, model_dir: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                     tta: bool | None = None, device: str = "auto") -> list[str]:
        """``tta`` None keeps the model folder's own decision; True/False force flips on/off.  ``--overwrite``:
        Apply predicts again into the same work folder, and a re-run must not keep an earlier model's mask."""
        model = self.resolve_model_dir(model_dir)
        args = ["predict", str(model), *map(str, images), "--out", str(out_dir), "--device", device, "--overwrite"]
        return args + ({True: ["--tta"], False: ["--no-tta"]}.get(tta, []))

    def resolve_model_dir(self, model_dir: str | Path) -> Path:
        """A model folder (model.pt), or a search output folder whose best/ holds one."""
        root = Path(model_dir)
        for candidate in (root, root / "best"):
            if (candidate / "model.pt").exists():
                return candidate
        raise DatasetError(f"{root} holds no trained model (model.pt)",
                           "pick a search output folder (with best/) or an 'autoseg train' output folder")

    def start_engine(self, args: Sequence[str], work_dir: str | Path, on_event: Callable[[dict], None] | None = None,
                     on_log: Callable[[str], None] | None = None,
                     on_finished: Callable[[EngineProcess], None] | None = None,
                     env: dict[str, str] | None = None) -> EngineProcess:
        """Start ``autoseg <args>`` as a child process writing events to ``work_dir/<command>.events.jsonl``."""
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        command = str(args[0]) if args else "engine"
        return EngineProcess(args, work / f"{command}.events.jsonl", work / f"{command}.log", on_event=on_event,
                             on_log=on_log, on_finished=on_finished, env=env, python=self.python).start()

    def run_engine(self, args: Sequence[str], work_dir: str | Path, on_event: Callable[[dict], None] | None = None,
                   timeout: float | None = None, env: dict[str, str] | None = None) -> EngineProcess:
        """Blocking variant for scripts and tests: start, wait, raise DatasetError with the engine's message."""
        proc = self.start_engine(args, work_dir, on_event=on_event, env=env)
        state = proc.wait(timeout=timeout)
        if state == ProcessState.RUNNING:
            proc.cancel()
            raise DatasetError(f"engine '{args[0]}' did not finish within {timeout} s", "allow more time")
        if state != ProcessState.SUCCEEDED:
            msg = proc.error.get("message") if proc.error else proc.failure_message()
            hint = proc.error.get("hint", "") if proc.error else f"see the log {proc.log_path}"
            raise DatasetError(f"engine '{args[0]}' failed: {msg}", hint)
        return proc
