"""Set-up of a search: open or create the study, check it was made with the same settings, select the cases (proxy
data), write the stage outputs — once, returning a :class:`PreparedStudy` that the runner, the forecast, the budget
and the final training read and none of them changes."""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import EventWriter
from AutoSegCore.search.resume import check_same_settings, study_cases
from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.search.stages import stage_fingerprint, stage_plan
from AutoSegCore.search.summary import PLANNED_ATTR
from AutoSegCore.search.trial_spec import study_pruner
from AutoSegCore.utils.io import read_json, write_json
from AutoSegCore.utils.storage_url import redact

if TYPE_CHECKING:
    from AutoSegCore.data.dataset import Dataset
    from AutoSegCore.proxy.fidelity import Fidelity
    from AutoSegCore.spaces.space import SearchSpace



@dataclass(frozen=True)
class PreparedStudy:
    """A study ready to run: what ``prepare_study`` opened, selected and planned.  ``study`` is the live Optuna
    object (its trials change as they run); everything else is fixed for the run."""
    settings: SearchSettings
    folder: SearchDir
    study: optuna.Study
    storage_url: str                 # with its password, if any: never written or shown (``redact``)
    directions: list[str]
    space: SearchSpace               # less the keys a fixed-size proxy network makes unrankable
    fidelity: Fidelity
    fixed_by_proxy_net: list[str]
    ds: Dataset
    train_cases: list[str]           # names of the cases every trial trains on (proxy data, or a holdout split)
    val_cases: list[str]
    fingerprint: dict
    fingerprint_path: Path
    plan: dict | None
    join: bool                       # a worker joining someone else's study (``autoseg worker``)
    host: str


def prepare_study(settings: SearchSettings, events: EventWriter, *, launcher, host: str,
                  join: bool = False) -> PreparedStudy:
    """Open or create the study and select the cases; the fork server starts meanwhile (stopped on error)."""
    from AutoSegCore.proxy.fidelity import Fidelity
    from AutoSegCore.spaces import get_space

    # a mistyped space, --proxy-data or --proxy-net is refused before the fork server starts (that takes seconds)
    fidelity = Fidelity.parse(settings.proxy_data, settings.proxy_net)
    space = get_space(settings.space)
    if not Path(settings.data).exists():
        raise DatasetError(f"{settings.data}: dataset not found",
                           "pass the dataset folder (dataset.json + imagesTr/ + labelsTr/) or its dataset.json")
    folder = SearchDir(Path(settings.out).resolve())
    folder.root.mkdir(parents=True, exist_ok=True)
    launcher.warm()          # the fork server imports torch & co. while the cases are selected
    try:
        return _prepare(settings, events, folder, fidelity, space, host, join)
    except BaseException:
        launcher.close()
        raise


def _prepare(s: SearchSettings, events: EventWriter, folder: SearchDir, fidelity, space, host: str,
             join: bool) -> PreparedStudy:
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.search.storage import create_or_load_study, load_study, open_storage
    from AutoSegCore.strategies import MULTI_OBJECTIVE, make_sampler

    fixed_by_proxy_net: list[str] = []
    # Only the proxy paper's fixed proxy network (levels=N without width) trains one size for every trial, so
    # only then are the size keys unrankable and dropped; the width rule keeps their order, so the space stays whole.
    if fidelity.fixes_network_size:
        from AutoSegCore.networks.proxy import PROXY_KEYS

        space, fixed_by_proxy_net = space.without(k for keys in PROXY_KEYS.values() for k in keys)
    ds = load_dataset(s.data)
    unknown = sorted(set(s.holdout) - {c.name for c in ds.cases})
    if unknown:
        raise ConfigError(f"holdout case(s) not in {s.data}: {', '.join(unknown[:5])}", "check the case names")
    names = [c.name for c in ds.cases if c.name not in set(s.holdout)]
    if len(names) < 2:
        raise ConfigError("fewer than 2 cases remain for the search", "use a larger dataset or a smaller holdout")
    storage_url = s.storage_url()
    storage = open_storage(storage_url, must_exist=join)
    directions = list(space.directions)
    if len(directions) > 1 and s.strategy not in MULTI_OBJECTIVE:
        raise ConfigError(f"space '{s.space}' has {len(directions)} objectives but strategy '{s.strategy}' "
                          "optimises one", f"use one of {', '.join(MULTI_OBJECTIVE)}")
    sampler = make_sampler(s.strategy, seed=s.seed)
    pruner = study_pruner(s.strategy, len(directions), s.min_epochs, s.epochs)
    if join:
        study = load_study(storage, s.study_name, sampler=sampler, pruner=pruner)
        train_cases, val_cases = study_cases(study.user_attrs, names, s, storage_url, events, join=True)
    else:
        # the study's own settings are checked before the proxy-data selection writes proxy.json
        study = create_or_load_study(storage, s.study_name, directions, sampler, pruner)
        attrs = study.user_attrs
        check_same_settings(attrs, s, fidelity, storage_url)
        train_cases, val_cases = (study_cases(attrs, names, s, storage_url, events, join=False)
                                  or select_cases(s, folder, fidelity, ds, names, events))
        for key, value in (("space", s.space), ("strategy", s.strategy), ("proxy_data", fidelity.data_label),
                           ("proxy_net", fidelity.net_label), ("settings", s.to_dict()),
                           ("fixed_by_proxy_net", fixed_by_proxy_net),
                           ("cases", {"train": train_cases, "val": val_cases})):
            if attrs.get(key) != value:
                study.set_user_attr(key, value)
    reseed_sampler(study, s, host, join)
    # stage output: the one reading of the training cases' voxels that every trial's preprocessing needs
    fingerprint, fingerprint_path = stage_fingerprint(ds, train_cases, folder.root)
    # the dataset's plan: what every trial's config (and a space's relative ranges) is merged over; kept in
    # the study, so a resumed run and a worker on another machine merge over the same plan, not a re-measured one
    plan = None
    if s.plan:
        saved = study.user_attrs.get("plan")
        plan = stage_plan(fingerprint, folder.root, device=s.device, budget=s.final_time, events=events, saved=saved)
        if saved is None:
            study.set_user_attr("plan", plan)
    directions = [d.name.lower() for d in study.directions]
    prepared = PreparedStudy(s, folder, study, storage_url, directions, space, fidelity, fixed_by_proxy_net, ds,
                             list(train_cases), list(val_cases), fingerprint, fingerprint_path, plan, join, host)
    queue_planned_trial(prepared, events)
    write_json(folder.settings, {
        **s.to_dict(), "study_name": s.study_name, "storage": redact(storage_url),
        "storage_is_default": not s.storage, "directions": directions,
        "fidelity": fidelity.to_dict(), "train_cases": prepared.train_cases, "val_cases": prepared.val_cases})
    return prepared


def queue_planned_trial(p: PreparedStudy, events: EventWriter) -> None:
    """A fresh study's first trial is the dataset's planned recipe (``SearchSpace.planned_point``): what
    ``autoseg train`` would train, so a searched config wins only by beating it at the same fidelity, and a
    search too short to find better still ends with the plan.  Not for a joining worker, a study that has
    trials, ``--no-plan`` / ``--no-plan-trial``, or a space that cannot express the plan — a value out of its
    ranges, or another network fixed (SegNAS's DAGs, EMONAS): said in the log."""
    from AutoSegCore.planning import planned_config

    s = p.settings
    if p.join or not s.plan_trial or p.plan is None or p.study.get_trials(deepcopy=False):
        return
    point = p.space.planned_point(s.base_config, p.plan)
    arch = planned_config(p.plan, s.base_config)["network"]["arch"]
    if point is not None and p.space.to_config(point, s.base_config, p.plan)["network"]["arch"] != arch:
        point = None
    if point is None:
        events.emit("log", message=f"space {p.space.name} cannot express the planned recipe: the search "
                                   "starts from sampled points only")
        return
    p.study.enqueue_trial(point, user_attrs={PLANNED_ATTR: True})
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
    events.emit("log", message=f"first trial: the planned recipe ({shown})")


def reseed_sampler(study: optuna.Study, s: SearchSettings, host: str, join: bool) -> None:
    """A sampler's random stream restarts from its seed in every process, so a resumed study or a joining
    worker with the study's seed would draw the configurations already drawn (random search; the start-up
    trials of TPE, BOHB, …).  A fresh study keeps ``--seed`` (reproducible); a resumed one offsets it by the
    trials it holds (still reproducible); a worker also mixes in its host and process id, since workers
    that join at the same moment see the same trial count."""
    from AutoSegCore.strategies import make_sampler

    n = len(study.get_trials(deepcopy=False))
    if not n and not join:
        return
    salt = n if not join else n + zlib.crc32(f"{host}:{os.getpid()}".encode())
    study.sampler = make_sampler(s.strategy, seed=(s.seed + salt) % 2**32)


def select_cases(s: SearchSettings, folder: SearchDir, fidelity, ds, names: list[str],
                 events: EventWriter) -> tuple[list[str], list[str]]:
    """Proxy data by MI/NCC/random when asked (proxy paper: 50/50 train/val of the selection), else a holdout split."""
    from AutoSegCore.data.splits import holdout_split

    if fidelity.data_method is None:
        return holdout_split(sorted(names), s.val_fraction, s.seed)
    proxy_json = folder.proxy
    if proxy_json.is_file():
        saved = read_json(proxy_json)
        if saved.get("method") == fidelity.data_method and set(saved.get("selected", [])) <= set(names):
            return list(saved["train"]), list(saved["val"])
    from AutoSegCore.proxy.selection import save_proxy, select_proxy_data

    sel = select_proxy_data(ds.subset(names), method=fidelity.data_method, roi="label" if fidelity.roi else "none",
                            budget=fidelity.budget, seed=s.seed, val_fraction=0.5, cache_dir=folder.cache,
                            device=s.device)
    save_proxy(sel, proxy_json)
    events.emit("artifact", kind="proxy", path=str(proxy_json))
    return list(sel.train), list(sel.val)
