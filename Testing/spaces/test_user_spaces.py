"""User-defined spaces from YAML/JSON: conditional parameters, round trip, and clear errors for bad files."""
import json
import textwrap

import optuna
import pytest

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.spaces import get_space, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

USER_SPACE = textwrap.dedent("""
    name: my-space
    description: optimiser with an sgd-only momentum, and a second-level width only for deep nets
    fixed:
      training.epochs: 5
    params:
      - name: optimizer
        type: categorical
        choices: [adam, sgd]
        config: training.optimizer
      - name: momentum
        type: float
        low: 0.8
        high: 0.99
        config: training.momentum
        when: {param: optimizer, equals: sgd}
      - name: lr
        type: float
        low: 1.0e-4
        high: 1.0e-1
        log: true
        config: training.lr
      - name: depth
        type: int
        low: 2
        high: 5
        config: network.depth
      - name: channels_2
        type: int
        low: 8
        high: 64
        step: 8
        when: [{param: depth, gt: 2}, {param: optimizer, in: [adam, sgd]}]
      - name: batch
        type: int
        low: 2
        high: 8
        step: 2
        config: training.batch_size
    """)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_space.yaml"
    path.write_text(USER_SPACE)
    return path


def test_conditional_parameters_are_suggested_only_when_active(user_file):
    space = get_space(str(user_file))
    assert set(space.distributions()) == {"optimizer", "momentum", "lr", "depth", "channels_2", "batch"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.suggest(trial)
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("channels_2" in params) == (params["depth"] > 2)
        assert set(trial.params) == set(params)
        cfg = space.to_config(params)
        assert cfg["training"]["epochs"] == 5 and cfg["training"]["batch_size"] % 2 == 0
        expected_momentum = params["momentum"] if params["optimizer"] == "sgd" else DEFAULT_CONFIG["training"]["momentum"]
        assert cfg["training"]["momentum"] == expected_momentum
        seen.add(params["optimizer"])
        study.tell(trial, cfg["training"]["lr"])
    assert seen == {"adam", "sgd"}


def test_inactive_values_are_ignored(user_file):
    space = load_space(user_file)
    cfg = space.to_config({"optimizer": "adam", "momentum": 0.85, "lr": 1e-3, "depth": 2, "batch": 4})
    assert cfg["training"]["momentum"] == DEFAULT_CONFIG["training"]["momentum"]
    assert "momentum" not in cfg["space"]["params"]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(user_file, tmp_path, suffix):
    space = load_space(user_file)
    out = space.save(tmp_path / f"copy{suffix}")
    if suffix == ".json":
        json.loads(out.read_text())
    again = get_space(str(out))
    assert again.to_dict() == space.to_dict()
    assert again.distributions() == space.distributions()
    point = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01, "depth": 4, "channels_2": 16, "batch": 6}
    assert again.to_config(point) == space.to_config(point)


def test_builtin_round_trip(tmp_path):
    for name in ("segnas", "emonas"):
        space = get_space(name)
        again = load_space(space.save(tmp_path / f"{name}.yaml"))
        assert again.to_dict() == space.to_dict()


def _param(**kw):
    base = {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "config": "training.lr"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


INVALID = {
    "unknown type": ({"name": "s", "params": [_param(type="double")]}, ["'lr'", "type"]),
    "low above high": ({"name": "s", "params": [_param(low=0.5, high=0.1)]}, ["'lr'", "greater than high"]),
    "a choice the config does not know": ({"name": "s", "params": [{"name": "loss", "type": "categorical",
                                                                    "choices": ["dice", "bogus_loss"],
                                                                    "config": "training.loss"}]},
                                         ["'loss'", "['bogus_loss']", "training.loss"]),
    "a NaN bound": ({"name": "s", "params": [_param(low=float("nan"))]}, ["'lr'", "low = ", "must be a"]),
    "an infinite bound": ({"name": "s", "params": [_param(high=float("inf"))]}, ["'lr'", "high = ", "must be a"]),
    "unknown config key": ({"name": "s", "params": [_param(config="training.learning_rate")]},
                           ["'lr'", "training.learning_rate"]),
    "condition on an unknown param": ({"name": "s", "params": [_param(when={"param": "optimiser", "equals": "sgd"})]},
                                      ["'lr'", "optimiser"]),
    "condition on a later param": ({"name": "s", "params": [_param(when={"param": "opt", "equals": "sgd"}),
                                                            {"name": "opt", "type": "categorical", "choices": ["sgd"]}]},
                                   ["'lr'", "opt"]),
    "unknown condition operator": ({"name": "s", "params": [{"name": "d", "type": "int", "low": 2, "high": 6},
                                                            _param(when={"param": "d", "greater": 2})]},
                                   ["'lr'", "greater"]),
    "duplicate name": ({"name": "s", "params": [_param(), _param()]}, ["'lr'", "twice"]),
    "categorical without choices": ({"name": "s", "params": [{"name": "opt", "type": "categorical"}]},
                                    ["'opt'", "choices"]),
    "log with zero low": ({"name": "s", "params": [_param(low=0.0, log=True)]}, ["'lr'", "log"]),
    "int with float bounds": ({"name": "s", "params": [{"name": "d", "type": "int", "low": 2.5, "high": 6}]},
                              ["'d'", "integer"]),
    "typo in a param key": ({"name": "s", "params": [_param(hgih=3)]}, ["'lr'", "hgih"]),
    "directions do not match objective": ({"name": "s", "directions": ["maximize", "minimize"],
                                           "params": [_param()]}, ["directions"]),
    "unknown objective": ({"name": "s", "objective": "accuracy", "params": [_param()]}, ["objective"]),
    "fixed value the config refuses": ({"name": "s", "fixed": {"network.arch": "resnet"}, "params": [_param()]},
                                       ["network.arch", "resnet"]),
    "no params": ({"name": "s", "params": []}, ["params"]),
    "no name": ({"params": [_param()]}, ["name"]),
    "unknown top-level key": ({"name": "s", "parameters": [], "params": [_param()]}, ["parameters"]),
}


@pytest.mark.parametrize("case", INVALID)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_invalid_space_files(case, suffix, tmp_path):
    data, words = INVALID[case]
    path = tmp_path / f"bad{suffix}"
    path.write_text(json.dumps(data))          # JSON is valid YAML too
    with pytest.raises(ConfigError) as err:
        get_space(str(path))
    assert str(path) in err.value.message
    for word in words:
        assert word in err.value.message
    assert err.value.hint


def test_unreadable_and_unsafe_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: s\nparams: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        get_space(str(broken))
    unsafe = tmp_path / "unsafe.yaml"
    marker = tmp_path / "pwned"
    unsafe.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\nparams: []\n")
    with pytest.raises(ConfigError):
        get_space(str(unsafe))
    assert not marker.exists()
    with pytest.raises(ConfigError, match="not found"):
        get_space(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="unknown search space"):
        get_space("no-such-space")
