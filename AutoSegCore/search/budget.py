"""Budget first: a search with a time budget sizes its trials so that several finish in it, and one whose budget
cannot finish even the smallest trial trains the planned recipe instead — a ``--time`` always ends with a model.
A search whose trials are too short to learn the data cannot rank configurations either: when its first trial,
the planned recipe, ends without having learned (:func:`no_signal`), the search stops and gives the rest of its
time to the planned recipe's final training.

The sizes come from the cost forecast measured on the search's own data (``search/forecast.py``): a trial costs a
fixed start-up plus epochs × steps of a measured step; epochs and steps shrink together until ``MIN_FINISHED``
trials (per job) fit.  What was fitted is kept in ``forecast.json`` (``fitted``), so a resumed search (which reads
the same forecast) trains the same trial sizes.
"""
from __future__ import annotations

import numpy as np

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.utils.durations import format_duration

MIN_FINISHED = 4            # trials per job that a time budget must finish (BOHB needs a few to compare)
LEARNED_SHARE = 0.2         # of the way from the all-foreground guess to a perfect Dice: below it, nothing learned
NO_SIGNAL_ATTR = "no_signal"    # study attribute: the planned trial that learned nothing, and the trial size
MIN_STEPS = 5               # a trial's epochs are at least this many steps
DEFAULT_SEARCH_SECONDS = {"cpu": 3600.0, "cuda": 3 * 3600.0}    # `autoseg search DATA` with no --trials/--time


def fit_trials(settings, forecast: dict | None) -> dict | None:
    """With a final training to follow: the trial size (``epochs``, ``steps_per_epoch``) that lets ``MIN_FINISHED`` × jobs trials finish in
    ``settings.time_limit``, from the forecast's measured terms; ``{"skip": True, ...}`` when not even the
    smallest trial (``min_epochs`` × ``MIN_STEPS``) fits; None when the asked size already fits (or no forecast)."""
    if settings.time_limit is None or not settings.final or not forecast or not forecast.get("trial_seconds"):
        return None             # --no-final: no model to end with; the trials keep the size asked for
    want = MIN_FINISHED * settings.jobs
    if settings.trials is not None:
        want = min(want, int(settings.trials))
    affordable = int(float(settings.time_limit) // float(forecast["trial_seconds"])) * settings.jobs
    if affordable >= want:
        return None
    step = float(forecast["measured"]["proxy"]["step_seconds"])
    epochs = int(settings.epochs)
    steps = int(forecast["steps_per_epoch"])
    fixed = max(0.0, float(forecast["trial_seconds"]) - epochs * steps * step)     # start-up, loading, validation
    per_trial = float(settings.time_limit) * settings.jobs / want
    work = max(0.0, (per_trial - fixed) / step)                                      # steps a trial can afford
    min_epochs = int(settings.min_epochs)
    if work < min_epochs * MIN_STEPS:
        one = fixed + min_epochs * MIN_STEPS * step
        return {"skip": True, "reason": f"one trial of the smallest size ({min_epochs} epochs × {MIN_STEPS} steps) "
                                         f"takes ≈ {format_duration(one)}, more than the search budget "
                                         f"{format_duration(settings.time_limit)} allows {want} of"}
    new_steps = max(MIN_STEPS, min(steps, int(work // epochs)))
    new_epochs = max(min_epochs, min(epochs, int(work // new_steps)))
    return {"skip": False, "epochs": new_epochs, "steps_per_epoch": new_steps, "was": [epochs, steps],
            "trial_seconds": fixed + new_epochs * new_steps * step, "trials": want}


def apply_fit(p, forecast: dict | None, events: EventWriter = NULL_EVENTS) -> bool:
    """Size the prepared study's trials (``prepare.PreparedStudy``) to its budget (``fit_trials``), tell the user, rebuild the pruner for the new
    epochs; True when the search is skipped (no trial can finish: the final training trains the planned recipe)."""
    from AutoSegCore.config import make_config
    from AutoSegCore.planning import planned_config
    from AutoSegCore.search.trial_spec import study_pruner
    from AutoSegCore.utils.io import read_json, write_json

    path = p.folder.forecast
    saved = read_json(path) if path.is_file() else {}
    fit = saved.get("fitted") if "fitted" in saved else fit_trials(p.settings, forecast)
    if fit is None:
        return False
    if "fitted" not in saved and path.is_file():
        write_json(path, {**saved, "fitted": fit})
    s = p.settings
    if fit["skip"]:
        events.emit("log", message=f"budget: no trial can finish in --time {format_duration(s.time_limit)} "
                                   f"({fit['reason']}): the planned recipe is trained instead, for the search's "
                                   "time and the final training's")
        return True
    # the final training keeps the size asked for (or the plan's): only the trials shrink
    base = planned_config(p.plan, s.base_config) if p.plan else make_config(s.base_config)
    if not s.final_time:            # a --final-time governs the final training itself (its epochs then only cap)
        s.final_epochs = s.final_epochs or s.epochs
    s.final_steps_per_epoch = s.final_steps_per_epoch or s.steps_per_epoch or base["training"]["steps_per_epoch"]
    s.epochs, s.steps_per_epoch = fit["epochs"], fit["steps_per_epoch"]
    s.min_epochs = min(s.min_epochs, s.epochs)
    p.study.pruner = study_pruner(s.strategy, len(p.directions), s.min_epochs, s.epochs)
    events.emit("log", message=f"budget: trials sized to fit {fit['trials']} in {format_duration(s.time_limit)}: "
                               f"{fit['epochs']} epochs × {fit['steps_per_epoch']} steps (asked "
                               f"{fit['was'][0]} × {fit['was'][1]}), ≈ {format_duration(fit['trial_seconds'])} each")
    return False


def default_budget(device: str) -> float:
    """The search budget when neither trials nor a time is given: an hour on a CPU, three on a GPU."""
    from AutoSegCore.planning.planner import device_kind

    return DEFAULT_SEARCH_SECONDS[device_kind(device)]


def foreground_guess(fingerprint: dict | None) -> float | None:
    """The validation Dice of a net that learned nothing about where the structures are: an all-foreground guess,
    per class (its voxels against all voxels of the fingerprinted cases), averaged over the classes."""
    stats, cases = (fingerprint or {}).get("label_stats") or {}, (fingerprint or {}).get("cases") or []
    total = sum(float(np.prod(c["shape"])) for c in cases)
    dice = [2.0 * float(s["voxels_total"]) / (total + float(s["voxels_total"])) for s in stats.values()]
    return float(np.mean(dice)) if dice and total > 0 else None


def no_signal(settings, val_dice: float | None, fingerprint: dict | None) -> str | None:
    """Why the planned recipe's trial (the search's first) shows that trials of this size cannot rank
    configurations, or None.  It has learned nothing when its validation Dice is below ``LEARNED_SHARE`` of the
    way from the all-foreground guess (:func:`foreground_guess`) to 1: then every sampled configuration is compared
    on noise (Prostate_PROMISE12 at 30 CPU-minutes: 720-step trials, the plan at 0.07, the 'best' trial at 0.09 a
    net of nothing; docs/experiments.md).  Only for a time budget with a final training, which gets the time back."""
    guess = foreground_guess(fingerprint)
    if settings.time_limit is None or not settings.final or val_dice is None or guess is None:
        return None
    bar = guess + LEARNED_SHARE * (1.0 - guess)
    if float(val_dice) >= bar:
        return None
    size = f"{settings.epochs} epochs" + (f" × {settings.steps_per_epoch} steps" if settings.steps_per_epoch else "")
    return (f"the planned recipe reached validation Dice {float(val_dice):.3f} in a trial of {size}, below "
            f"{bar:.3f} (an all-foreground guess scores {guess:.3f}): trials this short learn nothing here and "
            "cannot rank configurations")
