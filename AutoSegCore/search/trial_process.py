"""The child side of a trial (``python -m AutoSegCore.search.trial_process TRIAL_DIR``, or forked by the fork
server): read its :class:`~AutoSegCore.search.trial_spec.TrialSpec`, train that config, report every epoch to
the study (so pruners / Hyperband can stop it), checkpoint every epoch, write ``result.json``.

Running trials in child processes means a crash, an out-of-memory kill or a hang takes down the trial,
never the study: the parent reads the exit status and records the failure.  The reverse holds too: a child
whose parent (the study or worker) was killed stops after the epoch it is in, with that epoch's checkpoint
written, so that re-running the study resumes from it instead of racing an orphan that trains on alone.

Per-epoch records go to one place, ``metrics.jsonl`` (the parent streams it as ``epoch`` events and stores it
in the study as the trial's ``history``); ``result.json`` holds only the trial's outcome — on failure too
(:func:`failure_of`: the child classifies its own exception as ``config``, ``data``, ``out-of-memory``,
``diverged`` or ``error``, with a hint), so the parent reads its log only for a process that died without one
(a signal).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from AutoSegCore.search.trial_spec import SPEC_FILE, TrialSpec, study_pruner
from AutoSegCore.utils.io import write_json

if TYPE_CHECKING:
    from AutoSegCore.utils.device import GpuMemoryCap

SPEC, RESULT, METRICS = SPEC_FILE, "result.json", "metrics.jsonl"
EXIT_PARENT_GONE = 75      # the study/worker that started this trial is gone (EX_TEMPFAIL: retry later)


def read_metrics(trial_dir: str | Path) -> list[dict]:
    """The per-epoch records a trial wrote so far (its history)."""
    path = Path(trial_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


def memory_limits(on_gpu: bool, memory_gb: float | None, memory_fraction: float | None
                  ) -> tuple[int | None, GpuMemoryCap | None]:
    """``--trial-memory-gb`` and the trial's share of a packed GPU as (RLIMIT_AS bytes or None, the cap on its GPU's
    memory or None).  On the CPU the limit is the address space; on a GPU it is a cap of the GPU's memory instead:
    CUDA's start-up maps far more virtual address space than the limit (it fails under RLIMIT_AS), and GPU memory
    is what trials sharing a GPU compete for."""
    from AutoSegCore.utils.device import GpuMemoryCap

    if not on_gpu:
        return (int(memory_gb * 1024 ** 3) if memory_gb else None), None
    return None, (GpuMemoryCap(memory_fraction, memory_gb) if memory_fraction or memory_gb else None)


def limit_memory(spec: TrialSpec) -> GpuMemoryCap | None:
    """Apply :func:`memory_limits` to this trial process before anything is allocated: the address space here, the
    GPU's cap returned for ``train_model`` (which applies it before its first CUDA allocation)."""
    device = spec.device.lower()
    on_gpu = device.startswith("cuda")
    if device == "auto" and (spec.memory_gb or spec.memory_fraction):  # resolved as train_model will; no CUDA context
        import torch

        on_gpu = torch.cuda.device_count() > 0
    rlimit, cap = memory_limits(on_gpu, spec.memory_gb, spec.memory_fraction)
    if rlimit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (rlimit, rlimit))
    return cap


def apply_threads(threads: int) -> None:
    """The trial's thread count, applied here only: torch's intra-op pool, and the OpenMP/BLAS pools that a fork
    server loaded before this trial existed (they read OMP_NUM_THREADS once, at load)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=max(1, int(threads)))
    except ImportError:
        pass
    from AutoSegCore.utils.device import set_threads

    set_threads(threads)


def _preprocessing(spec: TrialSpec, ds):
    """The trial's preprocessing cache from the search's stage outputs (no case is read to fit it), or None when
    the spec names none: ``train_model`` then fits it from the training cases, as a plain training does."""
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor
    from AutoSegCore.utils.io import read_json

    if spec.preprocessor:
        return PreprocessCache(Preprocessor.from_state(read_json(spec.preprocessor)), spec.cache_dir)
    if spec.fingerprint:
        from AutoSegCore.data.fingerprint import load_fingerprint
        from AutoSegCore.search.stages import preprocess_cache

        return preprocess_cache(spec.config, ds, spec.train_cases, load_fingerprint(spec.fingerprint), spec.cache_dir)
    return None


def failure_of(exc: BaseException) -> dict:
    """``result.json`` of a trial that raised ``exc``: ``status`` "failed", its ``kind`` (config, data,
    out-of-memory, diverged or error), a one-line ``error`` and a ``hint``."""
    import torch

    from AutoSegCore.errors import AutoSegError, ConfigError, DatasetError, OutOfDeviceMemory, TrainingDiverged

    text = " ".join(str(exc).split())[:300]
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    hint = exc.hint if isinstance(exc, AutoSegError) else ""
    if isinstance(exc, TrainingDiverged):
        kind = "diverged"
    elif isinstance(exc, DatasetError):
        kind = "data"
    elif isinstance(exc, ConfigError):
        kind = "config"
    elif isinstance(exc, OutOfDeviceMemory):
        kind = "out-of-memory"
    elif isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text:
        kind, hint = "out-of-memory", "a smaller patch, batch or network, or a larger --trial-memory-gb"
    else:
        kind, hint = "error", hint or "the traceback is in the trial's log.txt"
    return {"status": "failed", "kind": kind, "error": error, "hint": hint}


def run_trial_process(trial_dir: str | Path) -> int:
    """Train the trial of ``trial_dir/spec.json``; 0 with ``result.json`` written (complete or pruned).  An
    exception writes the failure's ``result.json`` and is raised on (its traceback to the log, exit code 1)."""
    import traceback

    trial_dir = Path(trial_dir)
    (trial_dir / RESULT).unlink(missing_ok=True)        # a re-queued trial's earlier attempt says nothing now
    try:
        return _run_trial(trial_dir)
    except Exception as exc:
        traceback.clear_frames(exc.__traceback__)       # free the failed step's tensors before writing
        try:
            write_json(trial_dir / RESULT, failure_of(exc))
        except Exception:                               # noqa: BLE001 - the parent falls back to the exit code
            pass
        raise


def _run_trial(trial_dir: Path) -> int:
    import optuna

    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.data.volumes import IO_STATS
    from AutoSegCore.search.storage import load_study, open_storage
    from AutoSegCore.training.api import train_model

    spec = TrialSpec.read(trial_dir)
    gpu_memory = limit_memory(spec)
    apply_threads(spec.threads)
    started = time.time()
    if spec.resume_from and not (trial_dir / "checkpoint.pt").exists() \
            and (Path(spec.resume_from) / "checkpoint.pt").exists():
        shutil.copy2(Path(spec.resume_from) / "checkpoint.pt", trial_dir / "checkpoint.pt")

    storage = open_storage(spec.storage, heartbeat=False)
    pruner = study_pruner(spec.strategy, len(spec.directions), spec.min_epochs, spec.epochs)
    study = load_study(storage, spec.study_name, pruner=pruner)
    trial = optuna.trial.Trial(study, spec.trial_id)
    reported = {s for s in trial.storage.get_trial(spec.trial_id).intermediate_values}

    parent = os.getppid()

    def on_epoch(epoch: int, record: dict) -> None:
        if os.getppid() != parent:          # re-parented: the study was killed; this epoch's checkpoint is on disk
            raise SystemExit(EXIT_PARENT_GONE)
        with open(trial_dir / METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({k: v for k, v in record.items() if k != "val_dice_per_case"}) + "\n")
        if spec.single_objective and record.get("val_dice") is not None:
            if epoch not in reported:
                trial.report(float(record["val_dice"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    ds = load_dataset(spec.data, validate=False)
    reads_before = IO_STATS["data_reads"]
    cache = _preprocessing(spec, ds)
    fit_reads = IO_STATS["data_reads"] - reads_before
    status, last = "complete", None
    try:
        last = train_model(ds, spec.config, trial_dir, train_cases=spec.train_cases, val_cases=spec.val_cases,
                           device=spec.device, callback=on_epoch, cache=cache, cache_dir=spec.cache_dir,
                           study_run={"trial": spec.number}, gpu_memory=gpu_memory)
    except optuna.TrialPruned:
        status = "pruned"
    history = read_metrics(trial_dir)
    vals = [h["val_dice"] for h in history if h.get("val_dice") is not None]
    out = {
        "status": status,
        "val_dice": last.val_dice if last else (vals[-1] if vals else 0.0),
        "val_dice_per_class": last.val_dice_per_class if last else (history[-1].get("val_dice_per_class", {}) if history else {}),
        "val_dice_per_case": last.val_dice_per_case if last else [],
        "num_params": last.num_params if last else None,
        "epochs": len(history),
        "train_dice": history[-1].get("train_dice") if history else None,
        "val_dice_history": vals,          # the objectives' overfitting term (spaces/objectives.py)
        "best_epoch": (int(max(range(len(vals)), key=lambda i: vals[i])) + 1) if vals else None,
        "seconds": time.time() - started,
        # voxel reads this trial spent fitting its preprocessing (0 when the search's stage outputs were given)
        "preprocessing_fit_reads": fit_reads if cache is not None else None,
    }
    if out["num_params"] is None:
        from AutoSegCore.networks import count_parameters

        out["num_params"] = count_parameters(spec.config["network"], ds.num_channels, max(ds.labels) + 1)
    if status == "complete":
        (trial_dir / "checkpoint.pt").unlink(missing_ok=True)   # the final model.pt is kept; saves disk
    write_json(trial_dir / RESULT, out)
    return 0


def main(trial_dir: str | Path) -> int:
    """The child's entry point (fresh interpreter or fork): the exit code the parent reads; a traceback goes to
    the trial's log, from which the parent reports a failed trial."""
    return run_trial_process(trial_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m AutoSegCore.search.trial_process TRIAL_DIR (started by autoseg search)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
