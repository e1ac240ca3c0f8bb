"""The child side of a trial (``python -m AutoSegCore trial TRIAL_DIR``): train one config, report every
epoch to the study (so pruners / Hyperband can stop it), checkpoint every epoch, write ``result.json``.

Running trials in child processes means a crash, an out-of-memory kill or a hang takes down the trial,
never the study: the parent reads the exit status and records the failure.  The reverse holds too: a child
whose parent (the study or worker) was killed stops after the epoch it is in, with that epoch's checkpoint
written, so that re-running the study resumes from it instead of racing an orphan that trains on alone.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from AutoSegCore.utils.io import read_json, write_json

SPEC, RESULT, METRICS = "spec.json", "result.json", "metrics.jsonl"
EXIT_PARENT_GONE = 75      # the study/worker that started this trial is gone (EX_TEMPFAIL: retry later)


def _limit_memory(gigabytes: float | None) -> None:
    if not gigabytes:
        return
    import resource

    limit = int(gigabytes * 1024 ** 3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_trial_process(trial_dir: str | Path) -> int:
    import optuna

    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.search.storage import load_study, open_storage
    from AutoSegCore.strategies import make_pruner
    from AutoSegCore.training.api import train_model
    from AutoSegCore.utils.device import set_threads

    trial_dir = Path(trial_dir)
    spec = read_json(trial_dir / SPEC)
    _limit_memory(spec.get("memory_gb"))
    set_threads(spec.get("threads"))
    started = time.time()
    resume_from = spec.get("resume_from")
    if resume_from and not (trial_dir / "checkpoint.pt").exists() and (Path(resume_from) / "checkpoint.pt").exists():
        shutil.copy2(Path(resume_from) / "checkpoint.pt", trial_dir / "checkpoint.pt")

    storage = open_storage(spec["storage"], heartbeat=False)
    single = len(spec["directions"]) == 1
    pruner = make_pruner(spec["strategy"], min_resource=spec["min_epochs"], max_resource=spec["epochs"]) if single else None
    study = load_study(storage, spec["study_name"], pruner=pruner)
    trial = optuna.trial.Trial(study, spec["trial_id"])
    reported = {s for s in trial.storage.get_trial(spec["trial_id"]).intermediate_values}

    parent = os.getppid()

    def on_epoch(epoch: int, record: dict) -> None:
        if os.getppid() != parent:          # re-parented: the study was killed; this epoch's checkpoint is on disk
            raise SystemExit(EXIT_PARENT_GONE)
        with open(trial_dir / METRICS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({k: v for k, v in record.items() if k != "val_dice_per_case"}) + "\n")
        if single and record.get("val_dice") is not None:
            if epoch not in reported:
                trial.report(float(record["val_dice"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    ds = load_dataset(spec["data"], validate=False)
    status, last = "complete", None
    try:
        result = train_model(ds, spec["config"], trial_dir, train_cases=spec["train_cases"],
                             val_cases=spec["val_cases"], device=spec.get("device", "auto"), callback=on_epoch,
                             cache_dir=spec.get("cache_dir"), trial=spec["number"])
        last = result
    except optuna.TrialPruned:
        status = "pruned"
    history = [json.loads(line) for line in (trial_dir / METRICS).read_text().splitlines() if line.strip()] \
        if (trial_dir / METRICS).exists() else []
    vals = [h["val_dice"] for h in history if h.get("val_dice") is not None]
    out = {
        "status": status,
        "val_dice": last.val_dice if last else (vals[-1] if vals else 0.0),
        "val_dice_per_class": last.val_dice_per_class if last else (history[-1].get("val_dice_per_class", {}) if history else {}),
        "val_dice_per_case": last.val_dice_per_case if last else [],
        "num_params": last.num_params if last else None,
        "epochs": len(history),
        "train_dice": history[-1].get("train_dice") if history else None,
        "val_dice_history": vals,
        "best_epoch": (int(max(range(len(vals)), key=lambda i: vals[i])) + 1) if vals else None,
        "history": history,
        "seconds": time.time() - started,
    }
    if out["num_params"] is None:
        from AutoSegCore.networks import count_parameters

        out["num_params"] = count_parameters(spec["config"]["network"], ds.num_channels, max(ds.labels) + 1)
    if status == "complete":
        (trial_dir / "checkpoint.pt").unlink(missing_ok=True)   # the final model.pt is kept; saves disk
    write_json(trial_dir / RESULT, out)
    return 0
