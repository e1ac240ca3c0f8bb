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
- Shared state: weights, Adam moments, baseline and counters are saved as plain JSON (each tensor a list of
  numbers with its shape and dtype, ``STATE_FORMAT``) in the study's system attributes after every update and
  reloaded when another worker has written a newer version, so several workers on one storage train one
  controller.  Concurrent updates are last-writer-wins (one update can be lost when two workers finish at the
  same instant).  No pickle: a shared (PostgreSQL) study is data anyone with access to it can write, so a state
  is read only into the tensors this controller already has, checked for shape, dtype and finite values first;
  anything else — including the pickled state of earlier versions — is ignored with a warning (and replaced
  at the next update).
"""
from __future__ import annotations

import json
import logging
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
STATE_FORMAT = "autoseg-rl/2"        # plain JSON arrays (the unversioned format before it held a pickle: refused)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")
_log = logging.getLogger(__name__)


def _array(t: torch.Tensor) -> dict:
    """A tensor as JSON: shape, dtype and its values flat (float32 printed with the 9 digits that round-trip)."""
    t = t.detach().cpu()
    values = t.reshape(-1).tolist()
    if t.dtype == torch.float32:
        values = [float(f"{v:.9g}") for v in values]
    return {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "data": values}


def _tensor(record, like: torch.Tensor, what: str) -> torch.Tensor:
    """The tensor of a JSON ``record``, which must have ``like``'s shape and dtype (checked before anything is
    allocated) and finite numbers only; ``ValueError`` naming ``what`` otherwise."""
    if not isinstance(record, dict) or _DTYPES.get(record.get("dtype")) != like.dtype \
            or record.get("shape") != list(like.shape):
        raise ValueError(f"{what}: not a {str(like.dtype).removeprefix('torch.')} array of shape {list(like.shape)}")
    data = record.get("data")
    if not isinstance(data, list) or len(data) != like.numel() \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in data):
        raise ValueError(f"{what}: not {like.numel()} finite numbers")
    return torch.tensor(data, dtype=like.dtype).reshape(like.shape)


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
        self._refused: int | None = None           # the shared state version last refused (warned once)

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
        if not isinstance(state, dict) or state.get("signature") != self._signature:
            return
        version = state.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version <= self._stats["version"]:
            return
        try:
            if state.get("format") != STATE_FORMAT:
                raise ValueError(f"format {state.get('format')!r} is not {STATE_FORMAT} (an earlier version's "
                                 "pickled state is never loaded)")
            model, adam, stats = self._read_state(state)
        except ValueError as exc:
            if self._refused != version:
                self._refused = version
                _log.warning("RL controller: the study's shared state (version %s) is ignored: %s; this worker "
                             "continues with its own controller and replaces it at its next update", version, exc)
            return
        self._model.load_state_dict(model)
        self._optim.load_state_dict({"state": adam, "param_groups": self._optim.state_dict()["param_groups"]})
        self._stats = stats

    def _read_state(self, state: dict) -> tuple[dict, dict, dict]:
        """Weights, Adam moments and counters of a shared state, each checked against this controller's own
        tensors (names, shapes, dtypes); the optimiser's settings stay this sampler's, never the study's."""
        own = self._model.state_dict()
        model = state.get("model")
        if not isinstance(model, dict) or sorted(model) != sorted(own):
            raise ValueError("its weights do not name this controller's tensors")
        model = {k: _tensor(model[k], v, k) for k, v in own.items()}
        params = list(self._model.parameters())
        moments = state.get("adam")
        if not isinstance(moments, list) or len(moments) != len(params):
            raise ValueError(f"its optimiser state is not a list of {len(params)} entries")
        adam = {}
        for i, (entry, p) in enumerate(zip(moments, params)):
            if entry is None:
                continue
            if not isinstance(entry, dict) or sorted(entry) != sorted(_ADAM_KEYS):
                raise ValueError(f"optimiser entry {i} is not {{{', '.join(_ADAM_KEYS)}}}")
            adam[i] = {"step": _tensor(entry["step"], torch.zeros((), dtype=torch.float32), f"step {i}"),
                       "exp_avg": _tensor(entry["exp_avg"], p.detach(), f"exp_avg {i}"),
                       "exp_avg_sq": _tensor(entry["exp_avg_sq"], p.detach(), f"exp_avg_sq {i}")}
        stats = {k: state.get(k) for k in ("baseline", "var", "version", "updates")}
        numbers = [stats["var"]] + ([] if stats["baseline"] is None else [stats["baseline"]])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) \
                or not stats["var"] >= 0 or isinstance(stats["updates"], bool) or not isinstance(stats["updates"], int):
            raise ValueError("its baseline and counters are not finite numbers")
        return model, adam, stats

    def _save_shared(self, study: Study) -> None:
        optim = self._optim.state_dict()["state"]
        self._stats["version"] += 1
        study._storage.set_study_system_attr(study._study_id, STATE_ATTR, {
            "format": STATE_FORMAT, "signature": self._signature,
            "model": {k: _array(v) for k, v in self._model.state_dict().items()},
            "adam": [{k: _array(optim[i][k]) for k in _ADAM_KEYS} if i in optim else None
                     for i in range(len(list(self._model.parameters())))],
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
