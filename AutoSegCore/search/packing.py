"""Longest-first packing of a random search's remaining trials on several jobs."""
from __future__ import annotations

import optuna

from AutoSegCore.events import EventWriter
from AutoSegCore.search.prepare import PreparedStudy
from AutoSegCore.search.summary import PLANNED_ATTR, counted


def pack_longest_first(p: PreparedStudy, events: EventWriter) -> None:
    """Longest-processing-time-first packing of the remaining trials of a random search on several jobs.

    With jobs in parallel the study ends when its last trial does; started in sampling order, a long trial
    drawn late runs alone while the other jobs idle.  A strategy that ignores results (random) can draw
    every remaining point now: they are queued (Optuna ``enqueue_trial``, durable across a resume) from
    the most to the least estimated compute — network FLOPs per voxel × batch × steps × epochs — which is
    the classic LPT schedule.  The points are exactly the sampler's stream, only their order changes; a queued
    planned trial (``prepare.queue_planned_trial``) still runs first.  Adaptive strategies (TPE, BOHB, …) must see
    results first, so they keep one point per free job; a time-limited study keeps the sampling order too.
    """
    s = p.settings
    if s.strategy != "random" or s.jobs < 2 or s.trials is None or s.time_limit is not None:
        return             # under a time budget, long trials first would finish fewer trials
    trials = p.study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    planned = sum(bool(t.user_attrs.get(PLANNED_ATTR)) for t in waiting)
    if len(waiting) > planned:
        return                 # already packed by an earlier run of this study, or re-queued work first
    remaining = s.trials - counted(trials) - planned
    if remaining < 2:
        return
    scratch = optuna.create_study(directions=p.study.directions, sampler=p.study.sampler)
    points = [p.space.suggest(scratch.ask()) for _ in range(remaining)]
    costs = [estimated_cost(p, point) for point in points]
    order = sorted(range(remaining), key=lambda i: -costs[i])      # stable: ties keep the sampling order
    for i in order:
        p.study.enqueue_trial(points[i], user_attrs={"packed_cost": costs[i]})
    events.emit("log", message=f"random search on {s.jobs} jobs: {remaining} trials queued "
                               "longest first (estimated compute) so no job idles at the end")


def estimated_cost(p: PreparedStudy, params: dict) -> float:
    """Relative compute of a point as its trial would train it (0 for a point that will not train)."""
    from AutoSegCore.networks.measure import flops_per_voxel

    try:
        cfg = p.space.to_config(params, p.settings.base_config, p.plan)
        net = p.fidelity.apply_network(cfg["network"])
        t = cfg["training"]
        steps = p.settings.steps_per_epoch or t["steps_per_epoch"]
        per_voxel = flops_per_voxel(net, p.ds.num_channels, len(p.ds.labels))
        return per_voxel * t["batch_size"] * steps * p.settings.epochs
    except Exception:          # an illegal point fails at once in its trial; it costs nothing to run
        return 0.0
