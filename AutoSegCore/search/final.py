"""After the search: retrain the best config(s) at full fidelity, ensemble, decide post-processing, fill best/.

This is the point of proxies: trials ran cheaply on proxy data / proxy nets; the winner(s) are retrained with
the full network on all training data for the final budget (optionally k-fold), and their probabilities are
averaged.  Largest-component post-processing is kept per class only where it does not lower validation Dice
(nnU-Net's rule).
"""
from __future__ import annotations

import copy
import os
import secrets
import shutil
import time
from pathlib import Path

import numpy as np
import optuna

from AutoSegCore.config import EPOCH_CAP_WITH_TIME_LIMIT
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.utils.io import DISK_FULL, private, read_json, write_json


def rank_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """Top-k completed trials: by value (single objective) or, on the Pareto front, by validation Dice."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("full_config")]
    if not done:
        return []
    if len(study.directions) == 1:
        sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
        return sorted(done, key=lambda t: sign * t.value)[:k]
    front = {t.number for t in study.best_trials}
    return sorted(done, key=lambda t: (t.number not in front, -(t.user_attrs.get("val_dice") or 0)))[:k]


def install_best(work: Path, members: list[Path], labels: dict, largest_component: list[int],
                 tta: bool = False) -> Path:
    """best/ as a model folder (one member) or an ensemble folder (members/ + ensemble.json), atomically swapped;
    ``largest_component`` and ``tta`` are the inference settings decided from validation.  The staging and the
    replaced folders are named for this process (``.best.tmp-PID-RANDOM``), so two runs never delete each other's;
    a full disk while staging leaves ``best/`` as it was and is an ``OSError`` naming ``best/``."""
    best = work / "best"
    _remove_dead_leftovers(work)
    tmp, old = (work / f".best.{what}-{os.getpid()}-{secrets.token_hex(4)}" for what in ("tmp", "old"))
    try:
        tmp.mkdir(parents=True, **({"mode": 0o700} if private() else {}))
        if len(members) == 1:
            for name in ("model.pt", "model.json", "history.json"):
                if (members[0] / name).exists():
                    shutil.copy2(members[0] / name, tmp / name)
            info = read_json(tmp / "model.json")
            info["config"]["inference"].update(largest_component=largest_component, tta=bool(tta))
            write_json(tmp / "model.json", info)
        else:
            for i, m in enumerate(members):
                dst = tmp / "members" / f"{i}"
                dst.mkdir(parents=True)
                for name in ("model.pt", "model.json"):
                    shutil.copy2(m / name, dst / name)
            write_json(tmp / "ensemble.json", {"members": [f"members/{i}" for i in range(len(members))],
                                               "labels": {str(k): v for k, v in labels.items()},
                                               "largest_component": largest_component,
                                               "inference": {"tta": bool(tta)}})
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in DISK_FULL:                   # shutil names the source file; the folder that filled is best/'s
            raise OSError(exc.errno, exc.strerror, str(best)) from None
        raise
    if best.exists():
        best.rename(old)
    tmp.rename(best)
    shutil.rmtree(old, ignore_errors=True)
    return best


def _remove_dead_leftovers(work: Path) -> None:
    """Staging folders of an install_best killed midway (its process is gone; the folder lock keeps other runs out)."""
    import psutil

    for p in work.glob(".best.*"):
        pid = p.name.split("-")[1] if p.name.count("-") == 2 else ""
        if p.is_dir() and (p.name in (".best.tmp", ".best.old") or pid.isdigit() and not psutil.pid_exists(int(pid))):
            shutil.rmtree(p, ignore_errors=True)


class _PlannedRecipe:
    """Stands for a trial when none completed: the planned recipe, trained for ``seconds``."""
    number = None
    params: dict = {}

    def __init__(self, config: dict, seconds: float) -> None:
        self.user_attrs = {"full_config": config}
        self.seconds = seconds


def finalize_search(settings, study: optuna.Study, ds, *, events: EventWriter = NULL_EVENTS,
                    n_predictions: int = 4, plan: dict | None = None, extra_seconds: float = 0.0) -> dict:
    """Retrain top-K (or K folds of the best), ensemble, decide post-processing, write best/, predictions/.

    With no completed trial and a ``plan``, the planned recipe (with the base config over it) is trained instead,
    for ``final_time`` + ``extra_seconds`` (the plan's budget without a final time): a search always ends with a
    model, and the user is told why it is not a searched one."""
    from AutoSegCore.data.dataset import read_case
    from AutoSegCore.data.splits import holdout_split, kfold_splits
    from AutoSegCore.data.writers import save_prediction
    from AutoSegCore.search.stages import preprocess_cache, stage_fingerprint
    from AutoSegCore.training.api import train_model
    from AutoSegCore.training.inference import Predictor
    from AutoSegCore.training.metrics import dice_per_class, evaluate_pair
    from AutoSegCore.training.postprocess import decide_largest_component, keep_largest_component

    t0 = time.time()
    work = Path(settings.out).resolve()
    top = rank_trials(study, max(1, settings.final_top_k))
    if not top and plan is None:
        events.emit("log", message="no completed trial: nothing to retrain")
        return {"members": [], "error": "no completed trial"}
    if not top:
        from AutoSegCore.planning import planned_config

        seconds = float(settings.final_time or plan["budget_seconds"]) + float(extra_seconds)
        events.emit("log", message=f"no trial completed in the search budget: training the planned recipe for "
                                   f"{seconds / 60:.1f} min instead (a longer --time lets trials finish)")
        top = [_PlannedRecipe(planned_config(plan, settings.base_config), seconds)]
    names = sorted(c.name for c in ds.cases if c.name not in set(settings.holdout))
    jobs: list[tuple[optuna.trial.FrozenTrial, str, list[str], list[str]]] = []
    if settings.final_folds and settings.final_folds > 1:
        for f, (tr, va) in enumerate(kfold_splits(names, settings.final_folds, settings.seed)):
            jobs.append((top[0], f"fold{f}", tr, va))
    else:
        tr, va = holdout_split(names, settings.val_fraction, settings.seed)
        for i, t in enumerate(top):
            jobs.append((t, "planned" if isinstance(t, _PlannedRecipe) else f"rank{i}_trial{t.number}", tr, va))
    members, per_member = [], []
    for i, (t, tag, tr, va) in enumerate(jobs):
        cfg = copy.deepcopy(t.user_attrs["full_config"])
        cfg["training"]["epochs"] = int(settings.final_epochs or settings.epochs)
        planned = isinstance(t, _PlannedRecipe)
        if settings.final_time or planned:         # equal shares, one training after another
            cfg["training"]["time_limit"] = (t.seconds if planned else float(settings.final_time)) / len(jobs)
        if cfg["training"].get("time_limit"):     # --final-time, or the base config's own limit for each member
            cfg["training"]["epochs"] = int(settings.final_epochs or EPOCH_CAP_WITH_TIME_LIMIT)
        cfg["training"]["seed"] = settings.seed
        steps = settings.final_steps_per_epoch or settings.steps_per_epoch
        if steps:
            cfg["training"]["steps_per_epoch"] = steps
        out = work / "final" / tag
        events.emit("progress", fraction=i / len(jobs), message=f"final training {tag} ({i + 1}/{len(jobs)})")
        fingerprint, _ = stage_fingerprint(ds, tr, work)        # the search's, when it trained on these cases
        res = train_model(ds, cfg, out, train_cases=tr, val_cases=va, device=settings.device, events=events,
                          cache=preprocess_cache(cfg, ds, tr, fingerprint, work / "cache"), trial=-1 - i)
        members.append(out)
        per_member.append({"trial": t.number, "tag": tag, "params": t.params, "full_val_dice": res.val_dice,
                           "proxy_val_dice": t.user_attrs.get("val_dice"), "val_dice_per_class": res.val_dice_per_class,
                           "train_cases": tr, "val_cases": va, "seconds": res.seconds})
    # validation predictions (original geometry) of the ensemble — or out-of-fold for k-fold members
    best = install_best(work, members, ds.labels, [])
    classes = [c for c in sorted(ds.labels) if c > 0]
    truths, spacings, names_val = [], [], []
    if settings.final_folds and settings.final_folds > 1:
        pairs = [(Predictor(m, device=settings.device), job[3]) for m, job in zip(members, jobs)]
    else:
        pairs = [(Predictor(best, device=settings.device), jobs[0][3])]
    # flip TTA: "auto" predicts validation both ways and keeps TTA only where it scores higher (as LCC below)
    can_flip = any(info.get("flip_axes") for p, _ in pairs for _, info, _ in p.members)
    modes = {"auto": [False, True] if can_flip else [False], "on": [True], "off": [False]}[settings.final_tta]
    by_mode: dict[bool, list] = {m: [] for m in modes}
    for predictor, val_names in pairs:
        predictor.largest_component = []
        for n in val_names:
            arr = read_case(ds.case(n))
            for mode in modes:
                predictor.tta = mode
                by_mode[mode].append(predictor.predict_array(arr.image, arr.affine, n))
            truths.append(arr.label)
            spacings.append(arr.spacing)
            names_val.append(n)
    tta_dice = {mode: float(np.mean([np.mean(list(dice_per_class(p, t, classes).values()) or [0.0])
                                     for p, t in zip(preds, truths)])) if truths else 0.0
                for mode, preds in by_mode.items()}
    tta = max(modes, key=lambda m: (tta_dice[m], not m))          # a tie keeps the cheaper prediction
    preds = by_mode[tta]
    lcc = decide_largest_component(preds, truths, classes)
    best = install_best(work, members, ds.labels, lcc, tta)
    final_preds = [keep_largest_component(p, lcc) for p in preds]
    metrics = [evaluate_pair(p, t, ds.labels, sp) for p, t, sp in zip(final_preds, truths, spacings)]
    ens = {"val_dice": float(np.mean([m["mean_dice"] for m in metrics])),
           "val_dice_per_class": {ds.labels[c]: float(np.mean([m["dice"][ds.labels[c]] for m in metrics]))
                                  for c in classes},
           "cases": dict(zip(names_val, [m["mean_dice"] for m in metrics]))}
    for n, p in list(zip(names_val, final_preds))[:n_predictions]:
        arr = read_case(ds.case(n))
        save_prediction(p, arr.affine, ds.labels, work / "predictions", n)
    summary = {"members": per_member, "ensemble": ens, "largest_component": lcc, "tta": tta,
               "tta_val_dice": {("on" if m else "off"): v for m, v in tta_dice.items()}, "folds": settings.final_folds,
               "top_k": settings.final_top_k, "seconds": time.time() - t0, "best": str(best)}
    write_json(work / "final" / "summary.json", summary)
    events.emit("artifact", kind="model", path=str(best))
    return summary
