"""Longest-first packing (a mixin of :class:`~AutoSegCore.search.runner.SearchRunner`) of a random search's
remaining trials on several jobs."""
from __future__ import annotations

import optuna

from AutoSegCore.search.summary import counted


class LongestFirstPacking:
    def _pack_longest_first(self) -> None:
        """Longest-processing-time-first packing of the remaining trials of a random search on several jobs.

        With jobs in parallel the study ends when its last trial does; started in sampling order, a long trial
        drawn late runs alone while the other jobs idle.  A strategy that ignores results (random) can draw
        every remaining point now: they are queued (Optuna ``enqueue_trial``, durable across a resume) from
        the most to the least estimated compute — network FLOPs per voxel × batch × steps × epochs — which is
        the classic LPT schedule.  The points are exactly the sampler's stream, only their order changes.
        Adaptive strategies (TPE, BOHB, …) must see results first, so they keep one point per free job; a
        time-limited study keeps the sampling order too.
        """
        if self.settings.strategy != "random" or self.settings.jobs < 2 or self.settings.trials is None or self.settings.time_limit is not None:
            return             # under a time budget, long trials first would finish fewer trials
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return                 # already packed by an earlier run of this study, or re-queued work first
        remaining = self.settings.trials - self._counted(trials)
        if remaining < 2:
            return
        scratch = optuna.create_study(directions=self.study.directions, sampler=self.study.sampler)
        points = [self.space.suggest(scratch.ask()) for _ in range(remaining)]
        costs = [self._estimated_cost(p) for p in points]
        order = sorted(range(remaining), key=lambda i: -costs[i])      # stable: ties keep the sampling order
        for i in order:
            self.study.enqueue_trial(points[i], user_attrs={"packed_cost": costs[i]})
        self.events.emit("log", message=f"random search on {self.settings.jobs} jobs: {remaining} trials queued "
                                        "longest first (estimated compute) so no job idles at the end")

    def _estimated_cost(self, params: dict) -> float:
        """Relative compute of a point as its trial would train it (0 for a point that will not train)."""
        from AutoSegCore.networks.measure import flops_per_voxel

        try:
            cfg = self.space.to_config(params, self.settings.base_config, self.plan)
            net = self.fidelity.apply_network(cfg["network"])
            t = cfg["training"]
            steps = self.settings.steps_per_epoch or t["steps_per_epoch"]
            per_voxel = flops_per_voxel(net, self.ds.num_channels, len(self.ds.labels))
            return per_voxel * t["batch_size"] * steps * self.settings.epochs
        except Exception:          # an illegal point fails at once in its trial; it costs nothing to run
            return 0.0
