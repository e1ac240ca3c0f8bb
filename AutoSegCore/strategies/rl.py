"""Reinforcement-learning controller (the proxy paper §3, after Zoph & Le): a tiny LSTM picks each parameter in turn,
trained with REINFORCE against a moving-average baseline.

- Action grid per parameter: categorical → its choices; int/float with step having ≤ ``max_choices`` values
  → every value; any other numeric parameter → ``n_grid`` points evenly spaced in its (log-)range, i.e. the
  unit-cube cell centres (i + 0.5)/n_grid decoded (encoding.py).
- Controller: LSTMCell(hidden) fed the embedding of the previous action (a learned start token first); one
  linear head per parameter gives that parameter's logits.  Params are visited in search-space order.
- Reward r = −value (minimisation sense); failed trials get the worst value (penalty.py).  Baseline
  b ← β·b + (1−β)·r; advantage (r − b) is divided by a running standard deviation so the learning rate does
  not depend on the objective's scale; loss = −advantage·log π(actions) − entropy_weight·H; Adam.
- Shared state: weights, Adam state, baseline and counters are saved (torch.save → base64) in the study's
  system attributes after every update and reloaded (``torch.load(weights_only=True)``) when another worker
  has written a newer version, so several workers on one storage train one controller.  Concurrent updates
  are last-writer-wins (one update can be lost when two workers finish at the same instant).
"""
from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, json_to_distribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from AutoSegCore.strategies.base import UnitCubeSampler
from AutoSegCore.strategies.encoding import UnitCube, _n_cells, decode_value, encode_value
from AutoSegCore.strategies.penalty import STRATEGY_PENALTY, was_requeued

STATE_ATTR = "rl:state"
ACTIONS_ATTR = "rl:actions"


def action_grid(dist: BaseDistribution, n_grid: int = 10, max_choices: int = 16) -> list[Any]:
    """The values the controller can choose for one parameter (see module docstring)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    cells = _n_cells(dist)
    k = cells if cells is not None and cells <= max_choices else n_grid
    values: list[Any] = []
    for i in range(k):
        v = decode_value(dist, (i + 0.5) / k)
        if v not in values:
            values.append(v)
    return values


class _Controller(torch.nn.Module):
    def __init__(self, sizes: list[int], hidden: int) -> None:
        super().__init__()
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.embed = torch.nn.Embedding(int(sum(sizes)) + 1, hidden)   # last row = start token
        self.cell = torch.nn.LSTMCell(hidden, hidden)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(hidden, k) for k in sizes)

    def run(self, actions: list[int] | None = None, generator: torch.Generator | None = None):
        """Sample (actions=None) or score given actions; returns actions, sum log-prob, sum entropy."""
        token = torch.tensor([int(sum(self.sizes))])
        h = c = torch.zeros(1, self.cell.hidden_size)
        chosen, logp, ent = [], torch.zeros(()), torch.zeros(())
        for i, head in enumerate(self.heads):
            h, c = self.cell(self.embed(token), (h, c))
            log_probs = torch.log_softmax(head(h)[0], dim=-1)
            a = int(torch.multinomial(log_probs.exp(), 1, generator=generator)) if actions is None else actions[i]
            chosen.append(a)
            logp = logp + log_probs[a]
            ent = ent - (log_probs.exp() * log_probs).sum()
            token = torch.tensor([int(self.offsets[i]) + a])
        return chosen, logp, ent


class ControllerSampler(UnitCubeSampler):
    """REINFORCE-trained LSTM controller over the discretised search space (single objective)."""

    def __init__(self, *, seed: int | None = None, hidden: int = 32, lr: float = 0.01, baseline_decay: float = 0.8,
                 entropy_weight: float = 0.05, n_grid: int = 10, max_choices: int = 16) -> None:
        super().__init__(seed=seed)
        self.hidden, self.lr, self.baseline_decay = hidden, lr, baseline_decay
        self.entropy_weight, self.n_grid, self.max_choices = entropy_weight, n_grid, max_choices
        self._generator = torch.Generator().manual_seed(int(self._rng.randint(2**31 - 1)))
        self._signature: str | None = None
        self._names: list[str] = []
        self._grids: list[list[Any]] = []
        self._model: _Controller | None = None
        self._optim: torch.optim.Optimizer | None = None
        self._stats = {"baseline": None, "var": 1.0, "version": 0, "updates": 0}

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._generator.manual_seed(int(self._rng.randint(2**31 - 1)))

    # ------------------------------------------------------------------ model for a space
    def _ensure(self, study: Study, cube: UnitCube) -> None:
        if self._signature != cube.signature:
            self._signature, self._names = cube.signature, list(cube.names)
            self._grids = [action_grid(d, self.n_grid, self.max_choices) for d in cube.distributions]
            torch.manual_seed(int(self._seed or 0))
            self._model = _Controller([len(g) for g in self._grids], self.hidden)
            self._optim = torch.optim.Adam(self._model.parameters(), lr=self.lr)
            self._stats = {"baseline": None, "var": 1.0, "version": 0, "updates": 0}
        self._load_shared(study)

    def _load_shared(self, study: Study) -> None:
        state = study._storage.get_study_system_attrs(study._study_id).get(STATE_ATTR)
        if not state or state.get("signature") != self._signature or state["version"] <= self._stats["version"]:
            return
        blob = torch.load(io.BytesIO(base64.b64decode(state["weights"])), weights_only=True)
        self._model.load_state_dict(blob["model"])
        self._optim.load_state_dict(blob["optim"])
        self._stats = {k: state[k] for k in ("baseline", "var", "version", "updates")}

    def _save_shared(self, study: Study) -> None:
        buf = io.BytesIO()
        torch.save({"model": self._model.state_dict(), "optim": self._optim.state_dict()}, buf)
        self._stats["version"] += 1
        study._storage.set_study_system_attr(study._study_id, STATE_ATTR, {
            "signature": self._signature, "weights": base64.b64encode(buf.getvalue()).decode("ascii"),
            **self._stats})

    # ------------------------------------------------------------------ sampling
    def _sample(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        self._ensure(study, cube)
        with torch.no_grad():
            actions, _, _ = self._model.run(generator=self._generator)
        self._set_trial_attr(study, trial, ACTIONS_ATTR, {"signature": self._signature, "actions": actions})
        return {n: g[a] for n, g, a in zip(self._names, self._grids, actions)}

    def _actions_of(self, trial: FrozenTrial) -> list[int] | None:
        tag = trial.system_attrs.get(ACTIONS_ATTR)
        if tag and tag.get("signature") == self._signature:
            return list(tag["actions"])
        try:       # a trial not sampled by the controller (first trial, enqueued): nearest grid value
            acts = []
            for name, grid in zip(self._names, self._grids):
                dist = self._dist_of(name)
                u = encode_value(dist, trial.params[name])
                acts.append(int(np.argmin([abs(encode_value(dist, g) - u) for g in grid])))
            return acts
        except (KeyError, TypeError):
            return None

    def _dist_of(self, name: str) -> BaseDistribution:
        for n, d in json.loads(self._signature):
            if n == name:
                return json_to_distribution(json.dumps(d))
        raise KeyError(name)

    # ------------------------------------------------------------------ learning
    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        if len(study.directions) > 1 or self._model is None or state == TrialState.RUNNING or was_requeued(trial):
            return             # a stopped and re-queued trial is no reward: its re-run will be
        with self._lock:
            actions = self._actions_of(trial)
            if actions is None:
                return
            self._load_shared(study)
            sign = self._signs(study)[0]
            if values is not None and math.isfinite(values[0]) and state == TrialState.COMPLETE:
                reward = -sign * values[0]
            elif state == TrialState.PRUNED and trial.intermediate_values:
                reward = -sign * trial.intermediate_values[max(trial.intermediate_values)]
            else:
                reward = -max(self._scalar_values(study, self._finished(study)) + [STRATEGY_PENALTY])
            st = self._stats
            if st["baseline"] is None:     # first reward: start the running scale at its magnitude
                st["baseline"], st["var"] = reward, max(abs(reward), 1e-3) ** 2
            advantage = (reward - st["baseline"]) / math.sqrt(st["var"] + 1e-12)
            st["var"] = self.baseline_decay * st["var"] + (1 - self.baseline_decay) * (reward - st["baseline"]) ** 2
            st["baseline"] = self.baseline_decay * st["baseline"] + (1 - self.baseline_decay) * reward
            _, logp, ent = self._model.run(actions=actions)
            loss = -advantage * logp - self.entropy_weight * ent
            self._optim.zero_grad()
            loss.backward()
            self._optim.step()
            st["updates"] += 1
            self._save_shared(study)
