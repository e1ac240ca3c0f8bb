"""A cost forecast before a search starts: how long the search and the final training will take on this machine.

The model is deliberately plain, and every term of it is measured here, on the search's own data and settings:

* **step seconds** — a few training steps (after one warm-up step) of a *representative* net: of 24 seeded random
  points of the space, the one whose forward FLOPs are nearest their mean (:func:`representative_params`), at the
  proxy fidelity (what a trial trains) with the threads one trial gets (cores / ``--jobs``), and at full fidelity
  with every core (what the final training trains) when that is another net;
* **validation seconds** — one sliding-window prediction of one validation case, × the validation cases;
* **start-up seconds** — a trial's process start (``TRIAL_STARTUP_SECONDS``, measured by bench/search_speedup.py)
  plus the measured loading of its cases from the preprocessing cache.

A trial = start-up + epochs × (steps × step + validation every ``val_every`` epochs); the search =
⌈trials / jobs⌉ × trial (with ``--time``: how many trials the budget buys).  The final training = its epochs ×
(steps × full step + validation) per member, plus its validation predictions (× 2 with TTA auto).  It assumes
every trial runs all its epochs: pruning (BOHB, Hyperband) only makes the search shorter, so for those
strategies the search figure is an upper bound.  The sampled nets differ from the median one, so single trials
vary around it; the sum over many trials is what the forecast is for.

:func:`forecast_search` is the public entry; ``autoseg search`` writes ``forecast.json`` and emits a
``forecast`` event before its first trial, and ``autoseg search --forecast-only`` stops there.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.utils.durations import format_duration
from AutoSegCore.utils.io import read_json, write_json

TRIAL_STARTUP_SECONDS = 1.0      # a trial's process start (fork server) + imports: bench/search_speedup.py, ~1 s
MEASURED_STEPS = 3               # timed steps per net (the fastest counts) after a warm-up step (2 if it took > 2 s)


SAMPLED_POINTS = 24              # random points of the space whose mean cost the measured net stands for


def representative_params(space, in_channels: int = 1, out_channels: int = 2, n: int = SAMPLED_POINTS,
                          seed: int = 0) -> tuple[dict, dict]:
    """The point of ``space`` whose net costs what the space's nets cost on average: ``n`` seeded random legal
    points are drawn, each net's forward FLOPs per voxel counted on the meta device (milliseconds, no training),
    and the point nearest the mean is returned with {"mean_flops", "flops", "points"}.  A step's time is close to
    linear in FLOPs, and the mean of a linear cost is the cost at the mean, so the search's sum of trials is
    forecast from this one net (single trials vary around it)."""
    import optuna

    from AutoSegCore.networks.measure import flops_per_voxel

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(4 * n):
        params = space.suggest(study.ask())
        if not space.is_legal(params):
            continue
        try:
            flops = flops_per_voxel(space.to_config(params, {})["network"], in_channels, out_channels)
        except Exception:        # noqa: BLE001 - a net the counter cannot build is left out of the mean
            continue
        points.append((flops, params))
        if len(points) >= n:
            break
    if not points:
        return median_params(space), {}
    mean = sum(f for f, _ in points) / len(points)
    flops, params = min(points, key=lambda fp: abs(fp[0] - mean))
    return params, {"mean_flops": mean, "flops": flops, "points": len(points)}


def median_params(space) -> dict:
    """The point of ``space`` with every parameter at the middle of its range (log ranges: geometric middle;
    choices: the middle one); falls back to seeded random points when that point is not a legal one."""
    import optuna
    import optuna.distributions as od

    def middle(d):
        if isinstance(d, od.CategoricalDistribution):
            return d.choices[(len(d.choices) - 1) // 2]
        lo, hi = d.low, d.high
        mid = math.sqrt(lo * hi) if d.log and lo > 0 else (lo + hi) / 2
        if isinstance(d, od.IntDistribution):
            step = d.step or 1
            return int(lo + step * round((mid - lo) / step))
        if d.step:
            return lo + d.step * round((mid - lo) / d.step)
        return mid

    params = space.suggest(optuna.trial.FixedTrial({p.name: middle(p.distribution) for p in space.params}))
    if space.is_legal(params):
        return params
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        params = space.suggest(study.ask())
        if space.is_legal(params):
            return params
    raise ValueError(f"space {space.name}: no legal point found for the forecast")


class TooBigToTime(RuntimeError):
    """The measured net's step cannot fit the memory it would run in: timing it would swap for minutes (CPU) and
    then fail as its trials will."""


def _check_fits(trainer, config: dict, in_channels: int, cap_gb: float | None) -> None:
    """Refuse to time a step whose saved activations alone exceed ``cap_gb`` (a trial's ``--trial-memory-gb``) or,
    on the CPU, the memory available now: the parent has no RLIMIT_AS of its own, so nothing else stops it."""
    from AutoSegCore.data.limits import available_memory
    from AutoSegCore.networks.measure import saved_activation_bytes

    caps = [(cap_gb * 2 ** 30, "--trial-memory-gb")] if cap_gb else []      # GiB, as the trial's RLIMIT_AS
    if trainer.device.type == "cpu":
        caps.append((available_memory(), "the memory available"))
    if not caps:
        return
    cap, where = min(caps)
    batch = int(config["training"]["batch_size"])
    need = saved_activation_bytes(config["network"], in_channels, trainer.out_classes, trainer.patch, batch,
                                  2 if trainer.amp is not None else 4)
    if need > cap:
        raise TooBigToTime(f"a step of the measured net (patch {'×'.join(map(str, trainer.patch))}, batch {batch}) "
                           f"keeps ≥ {need / 2 ** 30:.1f} GB of activations, over {where} ({cap / 2 ** 30:.1f} GB): not "
                           f"timed; trials this size will fail")


def _measure(config: dict, ds, train_cases: list[str], val_cases: list[str], fingerprint: dict, cache_dir,
             device: str, threads: int, memory_gb: float | None = None) -> dict:
    """Seconds of one training step and of one validation case's prediction of ``config``, and of loading its
    preprocessed cases (from the search's cache: what a trial does at its start).  :class:`TooBigToTime` before
    any step when the step cannot fit ``memory_gb`` (a trial's cap) or the memory available."""
    import torch

    from AutoSegCore.search.stages import preprocess_cache
    from AutoSegCore.training.process import prepare_process
    from AutoSegCore.training.trainer import Trainer

    device = str(prepare_process(device, seed=int(config["training"].get("seed", 0))))   # as a trial's process
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        t0 = time.perf_counter()
        cache = preprocess_cache(config, ds, train_cases, fingerprint, cache_dir)
        train_pp = cache.get_many([ds.case(n) for n in train_cases])
        val_pp = cache.get_many([ds.case(n) for n in val_cases[:1]])
        load = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="autoseg-forecast-") as tmp:
            trainer = Trainer(config, train_pp, val_pp, labels=ds.labels, out_dir=tmp,
                              in_channels=ds.num_channels, device=device)
            _check_fits(trainer, config, ds.num_channels, memory_gb)
            trainer.net.train()
            trainer._confusion = torch.zeros(trainer.out_classes, trainer.out_classes, dtype=torch.long,
                                             device=trainer.device)

            def steps(n: int) -> None:
                losses = [trainer._train_step() for _ in range(n)]
                torch.stack(losses).cpu()               # one sync, as an epoch does

            t1 = time.perf_counter()
            steps(1)                                    # warm-up (allocations, kernel choice)
            n = MEASURED_STEPS if time.perf_counter() - t1 < 2.0 else 2     # a big net: keep the forecast cheap
            times = []
            for _ in range(n):     # the fastest, as timeit: one step slowed by another process is not the net's cost
                t1 = time.perf_counter()
                steps(1)
                times.append(time.perf_counter() - t1)
            step = min(times)
            t2 = time.perf_counter()
            trainer.validate() if val_pp else None
            val_case = (time.perf_counter() - t2) if val_pp else 0.0
            info = {"step_seconds": step, "val_case_seconds": val_case, "load_seconds": load,
                    "num_params": trainer.num_params, "patch": list(trainer.patch),
                    "batch_size": int(config["training"]["batch_size"]), "threads": torch.get_num_threads()}
        return info
    finally:
        torch.set_num_threads(before)


def _trial_config(space, params: dict, base: dict, fidelity, epochs: int, steps: int | None,
                  plan: dict | None = None) -> tuple[dict, dict]:
    full = space.to_config(params, base, plan)
    trial = {**full, "network": fidelity.apply_network(full["network"])}
    trial["training"] = {**trial["training"], "epochs": epochs, "time_limit": None}
    if steps:
        trial["training"]["steps_per_epoch"] = steps
    return trial, full


def forecast_search(settings, *, ds=None, train_cases: list[str] | None = None, val_cases: list[str] | None = None,
                    fingerprint: dict | None = None, space=None, fidelity=None, plan: dict | None = None) -> dict:
    """The expected wall-clock of the search and of its final training for ``settings`` (a
    :class:`~AutoSegCore.search.settings.SearchSettings`), measured on its data: a dict with ``search_seconds``,
    ``final_seconds``, ``total_seconds``, ``trial_seconds`` (one trial), ``trials`` (the count forecast; with a
    time budget, what it buys), the measured terms under ``measured`` and a one-line ``text``.

    ``autoseg search`` passes what its set-up already made (the selected cases, the fingerprint); called alone,
    it selects cases by a plain holdout split (a proxy-data search trains on fewer cases: pass its ``train_cases``).
    Takes a few seconds (1 warm-up + 3 timed steps per measured net, 1 validation prediction each); writes nothing
    but the preprocessing cache under ``settings.out``/cache, which the search reuses.
    """
    from AutoSegCore.data.splits import holdout_split
    from AutoSegCore.proxy.fidelity import Fidelity
    from AutoSegCore.spaces import get_space

    t_start = time.perf_counter()
    s = settings
    if ds is None:
        from AutoSegCore.data.dataset import load_dataset

        ds = load_dataset(s.data)
    space = space or get_space(s.space)
    fidelity = fidelity or Fidelity.parse(s.proxy_data, s.proxy_net)
    pool = sorted(c.name for c in ds.cases if c.name not in set(s.holdout))
    if train_cases is None:
        train_cases, val_cases = holdout_split(pool, s.val_fraction, s.seed)
    val_cases = list(val_cases or [])
    cache = SearchDir(s.out).cache
    if fingerprint is None:        # alone: not the search's stage output (its cases may differ from the search's)
        from AutoSegCore.data.fingerprint import compute_fingerprint

        fingerprint = compute_fingerprint(ds.subset(train_cases))
    params, sampled = representative_params(space, ds.num_channels, max(ds.labels) + 1, seed=s.seed)
    trial_cfg, full_cfg = _trial_config(space, params, s.base_config, fidelity, s.epochs, s.steps_per_epoch, plan)
    threads = s.threads_per_job()
    device = s.device
    trial_timing = _measure(trial_cfg, ds, train_cases, val_cases, fingerprint, cache, device, threads,
                            s.trial_memory_gb)

    # one trial: start-up + epochs × (steps × step + validation on val_every epochs and the last)
    steps = int(trial_cfg["training"]["steps_per_epoch"])
    val_every = int(trial_cfg["training"].get("val_every", 1))
    val_epochs = len({e for e in range(1, s.epochs + 1) if e % val_every == 0} | {s.epochs}) if val_cases else 0
    trial_val = trial_timing["val_case_seconds"] * len(val_cases)
    trial_seconds = (TRIAL_STARTUP_SECONDS + trial_timing["load_seconds"]
                     + s.epochs * steps * trial_timing["step_seconds"] + val_epochs * trial_val)
    if s.time_limit is not None:
        waves = max(0, int(s.time_limit // trial_seconds))
        affordable = waves * s.jobs
        trials = min(affordable, s.trials) if s.trials is not None else affordable
        search_seconds = float(s.time_limit) if s.trials is None or affordable < s.trials \
            else math.ceil(trials / s.jobs) * trial_seconds
    else:
        trials = int(s.trials)
        search_seconds = math.ceil(trials / s.jobs) * trial_seconds

    final = {"seconds": 0.0}
    if s.final:
        final = forecast_final(s, full_cfg, ds, fingerprint, trial_timing=trial_timing, trial_cfg=trial_cfg)
    total = search_seconds + final["seconds"]
    out = {
        "version": 1, "created": time.time(), "search_seconds": search_seconds, "final_seconds": final["seconds"],
        "total_seconds": total, "trial_seconds": trial_seconds, "trials": trials, "jobs": s.jobs,
        "epochs": s.epochs, "steps_per_epoch": steps, "time_budget": s.time_limit, "val_cases": len(val_cases),
        "train_cases": len(train_cases), "strategy": s.strategy,
        "upper_bound": s.strategy in ("bohb",),      # pruned trials end early: the search figure is a ceiling
        "startup_seconds": TRIAL_STARTUP_SECONDS, "params": params, "sampled": sampled,
        "measured": {"proxy": trial_timing}, "final": final, "forecast_cost_seconds": time.perf_counter() - t_start,
    }
    out["text"] = describe_forecast(out)
    return out


def forecast_final(s, full_cfg: dict, ds, fingerprint: dict, *, trial_timing: dict | None = None,
                   trial_cfg: dict | None = None) -> dict:
    """Seconds of the final training of ``full_cfg`` (the full net on every search case, holdout split, one
    member after another, then the validation predictions of best/): {"seconds", "members", ...}.  Called before
    the search with the representative net, and after it with the winner's own (``final_winner``)."""
    from AutoSegCore.data.splits import holdout_split

    pool = sorted(c.name for c in ds.cases if c.name not in set(s.holdout))
    final_train, final_val = holdout_split(pool, s.val_fraction, s.seed)
    full_cfg = {**full_cfg, "training": dict(full_cfg["training"], time_limit=None)}
    fsteps = s.final_steps_per_epoch or s.steps_per_epoch
    if fsteps:
        full_cfg["training"]["steps_per_epoch"] = fsteps
    fsteps = int(full_cfg["training"]["steps_per_epoch"])
    fepochs = int(s.final_epochs or s.epochs)
    members = s.final_folds if s.final_folds > 1 else s.final_top_k
    same_net = trial_timing is not None and full_cfg["network"] == trial_cfg["network"] \
        and full_cfg["training"].get("batch_size") == trial_cfg["training"].get("batch_size")
    # the final training runs alone, with every core (a trial's step was timed with one trial's share)
    full = dict(trial_timing) if same_net and s.jobs == 1 else _measure(
        full_cfg, ds, final_train, final_val, fingerprint, SearchDir(s.out).cache, s.device,
        s.threads_per_job() * s.jobs)
    fval_every = int(full_cfg["training"].get("val_every", 1))
    fval_epochs = len({e for e in range(1, fepochs + 1) if e % fval_every == 0} | {fepochs})
    member_val = full["val_case_seconds"] * len(final_val)
    member = full["load_seconds"] + fepochs * fsteps * full["step_seconds"] + fval_epochs * member_val
    if s.final_time:
        member = float(s.final_time) / members + member_val       # the budget, then its last validation
    # after the members: validation predictions of best/ (both ways when TTA is decided from validation)
    predictions = member_val * (2 if s.final_tta == "auto" else 1)
    return {"seconds": members * member + predictions, "members": members, "member_seconds": member,
            "epochs": fepochs, "steps_per_epoch": fsteps, "val_cases": len(final_val),
            "time_budget": s.final_time, "measured": full}


def describe_forecast(f: dict) -> str:
    """One line: 'forecast: search ≈ 3.2 min (4 trials × 48 s, 1 job), final training ≈ 1.1 min, total ≈ 4.3 min'."""
    if f.get("time_budget") is not None:
        search = (f"search {format_duration(f['search_seconds'], rough=True)} buys ≈ {f['trials']} trial(s) of ≈ "
                  f"{format_duration(f['trial_seconds'], rough=True)} ({f['jobs']} at a time)")
    else:
        search = (f"search ≈ {format_duration(f['search_seconds'], rough=True)} ({f['trials']} trial(s) × "
                  f"{format_duration(f['trial_seconds'], rough=True)}, {f['jobs']} at a time)")
    if f.get("upper_bound"):
        search += " at most (pruned trials end early)"
    final = f", final training ≈ {format_duration(f['final_seconds'], rough=True)}" if f.get("final_seconds") else ""
    return f"forecast: {search}{final}; total ≈ {format_duration(f['total_seconds'], rough=True)}"


def record_actual(work: str | Path, *, search_seconds: float | None = None, final_seconds: float | None = None) -> dict | None:
    """Add the measured wall-clock (and actual/forecast ratios) to ``work/forecast.json``; None without one."""
    path = SearchDir(work).forecast
    if not path.is_file():
        return None
    f = read_json(path)
    actual = dict(f.get("actual") or {})
    if search_seconds is not None:
        actual["search_seconds"] = float(search_seconds)
        actual["search_ratio"] = search_seconds / f["search_seconds"] if f.get("search_seconds") else None
    if final_seconds is not None:
        actual["final_seconds"] = float(final_seconds)
        actual["final_ratio"] = final_seconds / f["final_seconds"] if f.get("final_seconds") else None
        winner = (f.get("final_winner") or {}).get("seconds")
        actual["final_winner_ratio"] = final_seconds / winner if winner else None
    f["actual"] = actual
    write_json(path, f)
    return f
