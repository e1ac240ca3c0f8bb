"""After the search: retrain the best config(s) at full fidelity, ensemble, decide post-processing, fill best/.

This is the point of proxies: trials ran cheaply on proxy data / proxy nets; the winner(s) are retrained with
the full network on all training data for the final budget (optionally k-fold), and their probabilities are
averaged.  Largest-component post-processing is kept per class only where it raises validation Dice
(nnU-Net's rule).
"""
from __future__ import annotations

import copy
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from AutoSegCore.config import EPOCH_CAP_WITH_TIME_LIMIT
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.search_dir import SearchDir
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
    folder = SearchDir(work)
    best = folder.best
    _remove_dead_leftovers(folder)
    tmp, old = (folder.best_staging(what, f"{os.getpid()}-{secrets.token_hex(4)}") for what in ("tmp", "old"))
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


def _remove_dead_leftovers(folder: SearchDir) -> None:
    """Staging folders of an install_best killed midway (its process is gone; the folder lock keeps other runs out)."""
    import psutil

    for p in folder.best_stagings():
        pid = p.name.split("-")[1] if p.name.count("-") == 2 else ""
        if p.is_dir() and (p.name in (".best.tmp", ".best.old") or pid.isdigit() and not psutil.pid_exists(int(pid))):
            shutil.rmtree(p, ignore_errors=True)


class _PlannedRecipe:
    """Stands for the search's winner when none can be trusted: the planned recipe, trained for ``seconds`` —
    from scratch when no trial completed, from the planned trial's weights (``source``) when that trial showed
    the search had no signal (``budget.no_signal``)."""
    number = None
    params: dict = {}

    def __init__(self, config: dict, seconds: float, source: optuna.trial.FrozenTrial | None = None) -> None:
        self.user_attrs = {"full_config": config}
        self.seconds, self.source = seconds, source


@dataclass
class FinalJob:
    """One final training: the trial (or planned recipe) it retrains, its folder tag, its case split, and the
    trial's model it starts from (None: from scratch)."""
    trial: optuna.trial.FrozenTrial | _PlannedRecipe
    tag: str
    train: list[str]
    val: list[str]
    init_from: Path | None = None


@dataclass
class InferenceChoice:
    """What validation decided: flip TTA and per-class largest component, with the predictions that decided it."""
    tta: bool
    tta_dice: dict[bool, float]
    largest_component: list[int]
    names: list[str]
    predictions: list[np.ndarray]
    truths: list[np.ndarray]
    spacings: list[tuple]
    affines: list[np.ndarray]


def finalize_search(settings, study: optuna.Study, ds, *, events: EventWriter = NULL_EVENTS,
                    n_predictions: int = 4, plan: dict | None = None, extra_seconds: float = 0.0,
                    stand_in: int | None = None) -> dict:
    """Plan the final trainings → train them → choose inference on validation → install ``best/`` once → write
    the validation predictions and ``final/final.json``.

    Retrains the top-K trials (or K folds of the best).  With no completed trial and a ``plan``, the planned recipe
    (with the base config over it) is trained instead, for ``final_time`` + ``extra_seconds`` (the plan's budget
    without a final time): a search always ends with a model, and the user is told why it is not a searched one.
    ``stand_in``: the number of the planned trial that learned nothing (``budget.no_signal``): the planned recipe is
    trained the same way, from that trial's weights."""
    t0 = time.time()
    folder = SearchDir(Path(settings.out).resolve())
    jobs = plan_final(settings, study, ds, folder, plan, extra_seconds, events, stand_in)
    if not jobs:
        events.emit("log", message="no completed trial: nothing to retrain")
        return {"members": [], "error": "no completed trial"}
    members, per_member = train_members(settings, ds, folder, jobs, events)
    choice = choose_inference(settings, ds, members, jobs)
    best = install_best(folder.root, members, ds.labels, choice.largest_component, choice.tta)
    summary = write_final(settings, ds, folder, choice, per_member, n_predictions)
    summary.update(seconds=time.time() - t0, best=str(best))
    write_json(folder.final_record, summary)
    events.emit("artifact", kind="model", path=str(best))
    return summary


def plan_final(settings, study: optuna.Study, ds, folder: SearchDir, plan: dict | None, extra_seconds: float,
               events: EventWriter, stand_in: int | None = None) -> list[FinalJob]:
    """The final trainings: top-K trials on the search's holdout split, or K folds of the best; the planned
    recipe when no trial completed or the planned trial ``stand_in`` learned nothing (and a plan exists); [] when
    there is nothing to train.  Each starts from its trial's weights where ``start_from`` allows it."""
    from AutoSegCore.data.splits import holdout_split, kfold_splits

    top = rank_trials(study, max(1, settings.final_top_k))
    if not top and plan is None:
        return []
    seconds = float(settings.final_time or (plan or {}).get("budget_seconds") or 0) + float(extra_seconds)
    names = sorted(c.name for c in ds.cases if c.name not in set(settings.holdout))
    seen = set((study.user_attrs.get("cases") or {}).get("train") or [])
    folds = settings.final_folds and settings.final_folds > 1
    splits = (kfold_splits(names, settings.final_folds, settings.seed) if folds
              else [holdout_split(names, settings.val_fraction, settings.seed)])
    replanned = None
    if plan is not None and (stand_in is not None or not top):
        source = study.trials[stand_in] if stand_in is not None else None
        config, seconds, replanned = planned_recipe(settings, ds, folder, plan, seconds, splits[0][0], source)
        top = [_PlannedRecipe(config, seconds, source)]
    if folds:
        jobs = [FinalJob(top[0], f"fold{f}", tr, va) for f, (tr, va) in enumerate(splits)]
    else:
        jobs = [FinalJob(t, "planned" if isinstance(t, _PlannedRecipe) else f"rank{i}_trial{t.number}", *splits[0])
                for i, t in enumerate(top)]
    for job in jobs:
        job.init_from = start_from(folder, job, seen)
    if replanned is not None:
        how = f" (planned again for that time: {replanned})" if replanned else ""
        if stand_in is None:
            events.emit("log", message=f"no trial completed in the search budget: training the planned recipe for "
                                       f"{seconds / 60:.1f} min instead{how} (a longer --time lets trials finish)")
        else:
            other = top[0].user_attrs["full_config"]["network"] != top[0].source.user_attrs["full_config"]["network"]
            start = (f"from trial {stand_in}'s weights" if jobs[0].init_from is not None else
                     "from scratch" + (f" (another network than trial {stand_in}'s)" if other else ""))
            events.emit("log", message=f"final training: the planned recipe for {seconds / 60:.1f} min{how}, {start} "
                                       "(the search stopped: its trials learned nothing; a longer --time gives them "
                                       "more steps)")
    return jobs


# the planned recipe is planned again when its time differs from the plan's budget by more than this factor (on a
# CPU the patch is sized to the time: the search's plan is made for --final-time, a stand-in gets the search's too)
REPLAN_FACTOR = 1.25


def planned_recipe(settings, ds, folder: SearchDir, plan: dict, seconds: float, train: list[str],
                   source: optuna.trial.FrozenTrial | None) -> tuple[dict, float, str]:
    """The planned recipe's config for a final training of ``seconds`` on ``train``, the seconds left for it, and
    what re-planning changed ('' when it did not).  The search's plan was made for the final time alone; a
    planned recipe that gets more (the search's time too) is planned again for its own time — on a CPU a larger
    patch, often a deeper net — from the training cases' fingerprint (written to ``final/plan.json``); the time
    that planning took (a few timed steps) comes out of its training.  Within ``REPLAN_FACTOR`` the search's own
    recipe is kept: the planned trial's (``source``) config, whose weights the final then starts from."""
    from AutoSegCore.planning import plan_dataset, planned_config, save_plan
    from AutoSegCore.search.stages import stage_fingerprint

    kept = source.user_attrs["full_config"] if source is not None else planned_config(plan, settings.base_config)
    planned_for = float(plan.get("budget_seconds") or 0)
    if planned_for <= 0 or seconds <= REPLAN_FACTOR * planned_for:
        return kept, seconds, ""
    t0 = time.time()
    fingerprint, _ = stage_fingerprint(ds, train, folder.root)
    again = plan_dataset(fingerprint=fingerprint, device=settings.device, budget=seconds)
    save_plan(again, folder.final_plan)
    config = planned_config(again, settings.base_config)
    left = max(seconds - (time.time() - t0), 0.5 * seconds)
    before, after = (("×".join(map(str, c["training"].get("patch_size") or [])) or "whole case")
                     for c in (kept, config))
    changed = [f"patch {before} → {after}" if before != after else "",
               f"depth {kept['network']['depth']} → {config['network']['depth']}"
               if kept["network"]["depth"] != config["network"]["depth"] else "",
               f"batch {kept['training']['batch_size']} → {config['training']['batch_size']}"
               if kept["training"]["batch_size"] != config["training"]["batch_size"] else ""]
    return config, left, ", ".join(c for c in changed if c) or "the same patch and network"


def start_from(folder: SearchDir, job: FinalJob, trial_train_cases: set[str]) -> Path | None:
    """The trial's model folder a final training may start from: a trial (not the planned recipe) whose model is
    kept, that trained the full network (not a proxy network) and never
    trained on the final's validation cases — which k folds always do, and proxy data may — so the validation
    that chooses TTA and post-processing stays unseen."""
    from AutoSegCore.training.model_io import MODEL_FILE

    trial = job.trial.source if isinstance(job.trial, _PlannedRecipe) else job.trial
    if trial is None or trial.number is None:
        return None
    attrs = trial.user_attrs
    if (attrs.get("config") or {}).get("network") != (attrs.get("full_config") or {}).get("network"):
        return None                      # a proxy network: nothing to start the full one from
    if job.trial.user_attrs["full_config"].get("network") != (attrs.get("full_config") or {}).get("network"):
        return None                      # the planned recipe, planned again for its time, has another network
    model = folder.trial(trial.number)
    if not (model / MODEL_FILE).is_file() or trial_train_cases & set(job.val):
        return None
    return model


def member_config(settings, job: FinalJob, n_jobs: int) -> dict:
    """The trial's full-fidelity config with the final budget: ``--final-time`` (or the planned recipe's
    seconds) shared equally, else ``--final-epochs``; the search's seed and steps per epoch."""
    cfg = copy.deepcopy(job.trial.user_attrs["full_config"])
    cfg["training"]["epochs"] = int(settings.final_epochs or settings.epochs)
    planned = isinstance(job.trial, _PlannedRecipe)
    if settings.final_time or planned:         # equal shares, one training after another
        cfg["training"]["time_limit"] = (job.trial.seconds if planned else float(settings.final_time)) / n_jobs
    if cfg["training"].get("time_limit"):     # --final-time, or the base config's own limit for each member
        cfg["training"]["epochs"] = int(settings.final_epochs or EPOCH_CAP_WITH_TIME_LIMIT)
    cfg["training"]["seed"] = settings.seed
    steps = settings.final_steps_per_epoch or settings.steps_per_epoch
    if steps:
        cfg["training"]["steps_per_epoch"] = steps
    return cfg


def train_members(settings, ds, folder: SearchDir, jobs: list[FinalJob],
                  events: EventWriter) -> tuple[list[Path], list[dict]]:
    """Train each final job into ``final/<tag>``, one after another; their folders and what each measured."""
    from AutoSegCore.search.stages import preprocess_cache, stage_fingerprint
    from AutoSegCore.training.api import train_model

    members, per_member = [], []
    for i, job in enumerate(jobs):
        cfg = member_config(settings, job, len(jobs))
        out = folder.final(job.tag)
        events.emit("progress", fraction=i / len(jobs), message=f"final training {job.tag} ({i + 1}/{len(jobs)})")
        fingerprint, _ = stage_fingerprint(ds, job.train, folder.root)      # the search's, when it trained on these cases
        res = train_model(ds, cfg, out, train_cases=job.train, val_cases=job.val, device=settings.device,
                          events=events, cache=preprocess_cache(cfg, ds, job.train, fingerprint, folder.cache),
                          study_run={"member": i}, init_from=job.init_from)
        members.append(out)
        t = job.trial
        per_member.append({"trial": t.number, "tag": job.tag, "params": t.params, "full_val_dice": res.val_dice,
                           "proxy_val_dice": t.user_attrs.get("val_dice"), "val_dice_per_class": res.val_dice_per_class,
                           "train_cases": job.train, "val_cases": job.val, "seconds": res.seconds,
                           "started_from": read_json(out / "model.json").get("started_from")})
    return members, per_member


def choose_inference(settings, ds, members: list[Path], jobs: list[FinalJob]) -> InferenceChoice:
    """Predict the validation cases (original geometry) with the ensemble of ``members`` — out-of-fold for k-fold
    members — with and without flip TTA (``--final-tta auto``), keep TTA only where it scores higher, then decide
    largest-component post-processing per class on the chosen predictions (nnU-Net's rule)."""
    from AutoSegCore.data.dataset import read_case
    from AutoSegCore.inference.predictor import Predictor
    from AutoSegCore.training.metrics import dice_per_class
    from AutoSegCore.inference.postprocess import decide_largest_component

    classes = [c for c in sorted(ds.labels) if c > 0]
    if settings.final_folds and settings.final_folds > 1:
        pairs = [(Predictor([m], device=settings.device), job.val) for m, job in zip(members, jobs)]
    else:
        pairs = [(Predictor(members, device=settings.device), jobs[0].val)]
    can_flip = any(info.get("flip_axes") for p, _ in pairs for _, info, _ in p.members)
    modes = {"auto": [False, True] if can_flip else [False], "on": [True], "off": [False]}[settings.final_tta]
    by_mode: dict[bool, list] = {m: [] for m in modes}
    truths, spacings, affines, names = [], [], [], []
    for predictor, val_names in pairs:
        predictor.largest_component = []
        for n in val_names:
            arr = read_case(ds.case(n))
            for mode in modes:
                predictor.tta = mode
                by_mode[mode].append(predictor.predict_array(arr.image, arr.affine, n))
            truths.append(arr.label)
            spacings.append(arr.spacing)
            affines.append(arr.affine)
            names.append(n)
    tta_dice = {mode: float(np.mean([np.mean(list(dice_per_class(p, t, classes).values()) or [0.0])
                                     for p, t in zip(preds, truths)])) if truths else 0.0
                for mode, preds in by_mode.items()}
    tta = max(modes, key=lambda m: (tta_dice[m], not m))          # a tie keeps the cheaper prediction
    lcc = decide_largest_component(by_mode[tta], truths, classes)
    return InferenceChoice(tta, tta_dice, lcc, names, by_mode[tta], truths, spacings, affines)


def write_final(settings, ds, folder: SearchDir, choice: InferenceChoice, per_member: list[dict],
                n_predictions: int) -> dict:
    """The ensemble's validation scores with the chosen inference, the first ``n_predictions`` validation
    predictions in ``predictions/``, and the record of the final training (returned; the caller writes it)."""
    from AutoSegCore.data.writers import save_prediction
    from AutoSegCore.training.metrics import evaluate_pair
    from AutoSegCore.inference.postprocess import keep_largest_component

    classes = [c for c in sorted(ds.labels) if c > 0]
    final_preds = [keep_largest_component(p, choice.largest_component) for p in choice.predictions]
    metrics = [evaluate_pair(p, t, ds.labels, sp) for p, t, sp in zip(final_preds, choice.truths, choice.spacings)]
    ens = {"val_dice": float(np.mean([m["mean_dice"] for m in metrics])),
           "val_dice_per_class": {ds.labels[c]: float(np.mean([m["dice"][ds.labels[c]] for m in metrics]))
                                  for c in classes},
           "cases": dict(zip(choice.names, [m["mean_dice"] for m in metrics]))}
    for n, p, affine in list(zip(choice.names, final_preds, choice.affines))[:n_predictions]:
        save_prediction(p, affine, ds.labels, folder.predictions, n)
    return {"members": per_member, "ensemble": ens, "largest_component": choice.largest_component, "tta": choice.tta,
            "tta_val_dice": {("on" if m else "off"): v for m, v in choice.tta_dice.items()},
            "folds": settings.final_folds, "top_k": settings.final_top_k}
