"""The engine's command lines and child processes: what the panels run, built from plain values and checked.

No MRML here: every method turns panel values into ``autoseg`` arguments (raising ConfigError on a bad value) or
runs them as a child process (:mod:`.process`), so the same calls serve the desktop app, the browser and scripts.
The lists the panels offer (spaces, strategies, proxy methods and networks) are the engine's, asked through
:func:`engine_choices`.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from .engine_outputs import search_dir
from .errors import ConfigError, DatasetError
from .process import EngineProcess, ProcessState, engine_command, engine_python

# "Test-time flips" choices → predict_args(tta=): None keeps the model folder's own decision (a search's best/
# keeps flips only if they scored higher on validation); True/False force them (`--tta` / `--no-tta`).
TTA_CHOICES = {"as the model decided": None, "on": True, "off": False}
CHOICES_TIMEOUT_S = 180          # the child imports torch (through the spaces): seconds on a busy machine
ENGINE_FIX = ("install the engine into that Python (pip install AutoSegCore, or the module's Install button in "
              "Slicer), or give the Python where AutoSegCore is installed")


def engine_choices(python: str | None = None) -> dict[str, list[str]]:
    """The engine's own choice lists: ``spaces``, ``strategies``, ``proxy_methods``, ``proxy_nets``
    (``AutoSegCore.choices.engine_choices``; the front ends keep no copies).

    ``python`` None: asked in this interpreter (the engine is installed beside the front end, as in Slicer and
    the browser app); a python given: asked once through ``<python> -m AutoSegCore choices --json``.  Cached per
    python (a failure is not cached, so installing the engine and asking again works).  Raises ConfigError naming
    the python and the fix when the engine cannot answer — never a stale fallback list.
    """
    return {key: list(values) for key, values in _engine_choices(None if python is None else str(python)).items()}


@functools.lru_cache(maxsize=None)
def _engine_choices(python: str | None) -> dict[str, tuple[str, ...]]:
    if python is None and importlib.util.find_spec("AutoSegCore") is not None:
        try:
            from AutoSegCore.choices import engine_choices as ask

            return {key: tuple(values) for key, values in ask().items()}
        except ImportError as exc:     # AutoSegCore there, a dependency (torch, optuna…) not yet
            raise ConfigError(f"the AutoSegSearch engine cannot be imported in this Python ({sys.executable}): "
                              f"{exc}", ENGINE_FIX) from None
    command = engine_command("choices", "--json", python=python or engine_python())
    where = f"the engine's Python {command[0]}"
    try:
        done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace",
                              stdin=subprocess.DEVNULL, timeout=CHOICES_TIMEOUT_S)
    except OSError as exc:             # no such file, not executable, not a program
        raise ConfigError(f"cannot run {where}: {exc.strerror or exc}",
                          "check the path: give a Python program where AutoSegCore is installed (e.g. Slicer's "
                          "PythonSlicer, or the bin/python of a virtual environment)") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{where} did not answer 'autoseg choices' within {CHOICES_TIMEOUT_S} s",
                          "check that this Python starts (run it in a terminal), then try again") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ConfigError(f"{where} cannot run 'autoseg choices': {last}", ENGINE_FIX)
    try:
        answer = json.loads(done.stdout)
        return {key: tuple(str(v) for v in answer[key])
                for key in ("spaces", "strategies", "proxy_methods", "proxy_nets")}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{where} answered 'autoseg choices' with no list of choices: {done.stdout[:200]!r}",
                          "update the engine in that Python to this module's version") from None


class EngineCommands:
    """Arguments of ``autoseg proxy|search|train|predict`` and running them with ``python`` (None: the engine's
    Python as :func:`.process.engine_python` finds it)."""

    def __init__(self, python: str | None = None) -> None:
        self.python = python

    def engine_choices(self) -> dict[str, list[str]]:
        """The engine's choice lists for this logic's python (see :func:`engine_choices`)."""
        return engine_choices(self.python)

    def proxy_args(self, data_dir: str | Path, out_dir: str | Path, method: str = "mi", roi: bool = True,
                   budget: float | int = 0.25, preview: bool = True, device: str | None = None,
                   cache_dir: str | Path | None = None) -> list[str]:
        """Arguments of ``autoseg proxy`` (without the python prefix and --events)."""
        methods = self.engine_choices()["proxy_methods"]
        if method not in methods:
            raise ConfigError(f"proxy method {method!r} is unknown", f"use one of {', '.join(methods)}")
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
        """A model folder (model.pt) or ensemble folder (ensemble.json), or a search output folder whose best/
        holds one."""
        root = Path(model_dir)
        for candidate in (root, search_dir(root).best):
            if (candidate / "model.pt").exists() or (candidate / "ensemble.json").exists():
                return candidate
        raise DatasetError(f"{root} holds no trained model (model.pt or ensemble.json)",
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
