"""Real Optuna studies for the report tests: cheap objectives that behave like segmentation trials.

Each trial "trains" for a few epochs: a learning curve rises towards a final Dice that depends on the
hyper-parameters, is reported every epoch (``trial.report``) and leaves the user attributes a real search
trial leaves (config, history, val_dice, per-class Dice, num_params, seconds, epochs, fidelity).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)   # the simulated crashes are expected

LABELS = ("anterior", "posterior")


def final_dice(params: dict) -> float:
    """The 'true' quality of a point: depth and loss matter, lr a little, ``noise_param`` not at all."""
    depth_effect = {2: 0.55, 3: 0.70, 4: 0.80, 5: 0.82, 6: 0.78}[params["depth"]]
    loss_effect = {"dice": 0.0, "dice_ce": 0.04, "dice_focal": 0.02}[params["loss"]]
    lr_effect = -0.01 * abs(math.log10(params["lr"]) + 2.5)
    return depth_effect + loss_effect + lr_effect


def curve(final: float, epochs: int, rng: np.random.Generator, noise: float) -> list[float]:
    """A saturating learning curve ending near ``final``."""
    return [float(np.clip(final * (1 - math.exp(-(e + 1) / 2.0)) / (1 - math.exp(-epochs / 2.0))
                          + rng.normal(0, noise), 0, 1)) for e in range(epochs)]


def make_objective(epochs: int = 6, noise: float = 0.005, seed: int = 0, fail_every: int = 0):
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> float:
        t0 = time.perf_counter()
        params = {"depth": trial.suggest_int("depth", 2, 6), "loss": trial.suggest_categorical(
            "loss", ["dice", "dice_ce", "dice_focal"]), "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "noise_param": trial.suggest_float("noise_param", 0.0, 1.0)}
        if fail_every and trial.number % fail_every == fail_every - 1:
            trial.set_user_attr("error", "exit code 1: RuntimeError: simulated crash")
            raise RuntimeError("simulated crash")
        values = curve(final_dice(params), epochs, rng, noise)
        history = []
        for epoch, v in enumerate(values, start=1):
            trial.report(v, epoch)
            history.append({"epoch": epoch, "loss": 1 - v, "val_dice": v, "seconds": 0.01})
        dice = values[-1]
        trial.set_user_attr("config", {"network": {"arch": "unet", "depth": params["depth"]},
                                       "training": {"loss": params["loss"], "lr": params["lr"], "epochs": epochs}})
        trial.set_user_attr("full_config", trial.user_attrs["config"])
        trial.set_user_attr("history", history)
        trial.set_user_attr("val_dice", dice)
        trial.set_user_attr("val_dice_per_class", {LABELS[0]: dice + 0.01, LABELS[1]: dice - 0.01})
        trial.set_user_attr("num_params", int(1000 * 2 ** params["depth"]))
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("fidelity", {"data": "mi+roi:0.25", "net": "levels=3"})
        trial.set_user_attr("seconds", time.perf_counter() - t0 + 1.0)
        return dice

    return objective


def make_mo_objective(epochs: int = 4, seed: int = 1):
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {"depth": trial.suggest_int("depth", 2, 6), "loss": trial.suggest_categorical(
            "loss", ["dice", "dice_ce", "dice_focal"]), "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "noise_param": trial.suggest_float("noise_param", 0.0, 1.0)}
        values = curve(final_dice(params), epochs, rng, 0.005)
        n_params = int(1000 * 4 ** params["depth"])
        trial.set_user_attr("history", [{"epoch": e, "loss": 1 - v, "val_dice": v, "seconds": 0.01}
                                        for e, v in enumerate(values, start=1)])
        trial.set_user_attr("val_dice", values[-1])
        trial.set_user_attr("val_dice_per_class", {LABELS[0]: values[-1], LABELS[1]: values[-1]})
        trial.set_user_attr("num_params", n_params)
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("seconds", 0.5)
        return 1.0 - values[-1], math.log(n_params)

    return objective


def write_search_json(work: Path, study: optuna.Study, storage: str, data: str = "", **extra) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "search.json").write_text(json.dumps({
        "study_name": study.study_name, "storage": storage, "space": study.user_attrs.get("space"),
        "strategy": study.user_attrs.get("strategy"), "directions": [d.name.lower() for d in study.directions],
        "data": data, "proxy_data": "mi+roi:0.25", "proxy_net": "levels=3", **extra}))


def _to_sqlite(study: optuna.Study, work: Path) -> str:
    """Copy a study run in memory into ``work/study.db`` (trials, datetimes, attrs, intermediate values).

    The objectives run against in-memory storage and the finished study is copied in one pass: the same
    sqlite study as running against it directly, ~4× faster on a busy shared disk (one commit per trial).
    """
    work.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{work / 'study.db'}"
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage, to_storage=storage)
    return storage


def build_single(work: Path, n_trials: int = 24, seed: int = 0, fail_every: int = 8, data: str = "") -> optuna.Study:
    study = optuna.create_study(study_name="single", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    for k, v in {"space": "toy", "strategy": "random", "proxy_data": "mi+roi:0.25", "proxy_net": "levels=3"}.items():
        study.set_user_attr(k, v)
    study.optimize(make_objective(seed=seed, fail_every=fail_every), n_trials=n_trials, catch=(RuntimeError,))
    storage = _to_sqlite(study, work)
    write_search_json(work, study, storage, data=data)
    return optuna.load_study(study_name="single", storage=storage)


def build_multi(work: Path, n_trials: int = 20, seed: int = 1) -> optuna.Study:
    study = optuna.create_study(study_name="multi", directions=["minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    for k, v in {"space": "emonas-toy", "strategy": "random", "proxy_data": "full", "proxy_net": "full"}.items():
        study.set_user_attr(k, v)
    study.optimize(make_mo_objective(seed=seed), n_trials=n_trials)
    storage = _to_sqlite(study, work)
    write_search_json(work, study, storage)
    return optuna.load_study(study_name="multi", storage=storage)
