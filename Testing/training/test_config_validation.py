"""Every key of every config section is checked before any work: a bad value is a one-line error (exit 2) naming
the file, the key and the fix — and nothing the product itself writes into a config is refused."""
from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
import yaml

from AutoSegCore import cli
from AutoSegCore.config import DEFAULT_CONFIG, RULES, Rule, load_config, make_config, validate_config
from AutoSegCore.data.preprocess import EXTRA_DEFAULTS
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import ARCH_DEFAULTS
from AutoSegCore.proxy.fidelity import Fidelity
from AutoSegCore.spaces import get_space, list_spaces
from AutoSegCore.spaces.paths import KNOWN_CONFIG
from shared_data import REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)
DATA = REPO / "Resources" / "DemoData" / "Hippocampus"
SHIPPED = sorted((REPO / "Resources" / "Configs").glob("*.yaml"))

# (YAML text of the config file, what stderr must name)
BAD = {
    # a section or sub-section that is not a mapping
    "section is a number": ("training: 5", "training = 5 must be a mapping"),
    "section is a list": ("network: [1, 2]", "network = [1, 2] must be a mapping"),
    "empty section": ("training:", "training = None must be a mapping"),
    "sub-section is a number": ("training: {augmentation: 3}", "training.augmentation = 3 must be a mapping"),
    "arch sub-section is a number": ("network: {segnas: 3}", "network.segnas = 3 must be a mapping"),
    # numbers
    "multiplier not a number": ("network: {multiplier: abc}", "network.multiplier"),
    "weight_decay not a number": ("training: {weight_decay: abc}", "training.weight_decay"),
    "weight_decay too large for a float": ("training: {weight_decay: 1" + "0" * 400 + "}", "training.weight_decay"),
    "lr infinite": ("training: {lr: .inf}", "training.lr = inf must be a positive, finite number"),
    "lr nan": ("training: {lr: .nan}", "training.lr"),
    "lr zero": ("training: {lr: 0}", "training.lr"),
    "time_limit infinite": ("training: {time_limit: .inf}", "training.time_limit = inf"),
    "momentum above 1": ("training: {momentum: 1.5}", "training.momentum"),
    "overlap 1.5": ("inference: {overlap: 1.5}", "inference.overlap = 1.5 must be a number in [0, 1)"),
    "overlap 1": ("inference: {overlap: 1}", "inference.overlap"),
    "negative overlap": ("inference: {overlap: -0.1}", "inference.overlap"),
    "dropout 1": ("network: {dropout: 1}", "network.dropout"),
    "probability above 1": ("training: {augmentation: {rotate_prob: 1.5}}", "training.augmentation.rotate_prob"),
    "gamma range reversed": ("training: {augmentation: {gamma_range: [1.25, 0.8]}}",
                             "training.augmentation.gamma_range"),
    "ct_window reversed": ("preprocessing: {ct_window: [100, -100]}", "preprocessing.ct_window"),
    # counts
    "val_every 0": ("training: {val_every: 0}", "training.val_every = 0 must be a positive integer"),
    "epochs not whole": ("training: {epochs: 2.5}", "training.epochs = 2.5 must be a positive integer"),
    "batch_size a bool": ("training: {batch_size: true}", "training.batch_size"),
    "negative warmup": ("training: {warmup_steps: -5}", "training.warmup_steps"),
    "negative translate": ("training: {augmentation: {translate: -1}}", "training.augmentation.translate"),
    "max_channels 0": ("network: {max_channels: 0}", "network.max_channels"),
    "seed text": ("training: {seed: abc}", "training.seed"),
    # lists and other forms
    "patch_size of two": ("training: {patch_size: [4, 4]}", "training.patch_size = [4, 4] must be null or 3"),
    "patch_size text": ("training: {patch_size: abc}", "training.patch_size"),
    "patch_size with 0": ("training: {patch_size: [64, 0, 64]}", "training.patch_size"),
    "flip axis 7": ("training: {augmentation: {flip_axes: [7]}}", "training.augmentation.flip_axes = [7]"),
    "flip axes word": ("training: {augmentation: {flip_axes: sometimes}}", "training.augmentation.flip_axes"),
    "target_spacing of two": ("preprocessing: {target_spacing: [1, 1]}", "preprocessing.target_spacing"),
    "image_order 2": ("preprocessing: {image_order: 2}", "preprocessing.image_order"),
    "largest_component a number": ("inference: {largest_component: 1}", "inference.largest_component"),
    "tta a word": ("inference: {tta: maybe}", "inference.tta"),
    "segnas op out of range": ("network: {arch: segnas, segnas: {ops: [9]}}", "network.segnas.ops"),
    # unknown names
    "typo in a key": ("training: {epoch: 1}", "unknown key 'training.epoch'"),
    "typo in a sub-section key": ("training: {augmentation: {flip_axis: [0]}}", "training.augmentation.flip_axis"),
    "typo in an arch key": ("network: {arch: segnas, segnas: {filter: 8}}", "network.segnas.filter"),
    "typo in a section": ("trainig: {epochs: 1}", "unknown section 'trainig'"),
}


def write(tmp_path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    return path


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, path, named: str, command: str = "train") -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"autoseg {command}: error: {path}: "), err
    assert named in lines[0], err
    assert lines[1].startswith("  hint: ") and len(lines[1]) > len("  hint: e.g. 1"), err


@pytest.mark.parametrize("case", BAD)
def test_a_bad_value_is_a_one_line_error_before_any_work(case, tmp_path, capsys):
    text, named = BAD[case]
    path, out = write(tmp_path, text), tmp_path / "o"
    code, err = run_cli(capsys, "train", DATA, "--config", path, "--out", out)
    assert_one_line_error(code, err, path, named)
    assert not out.exists()


@pytest.mark.parametrize("case", ["section is a number", "val_every 0", "typo in a key"])
def test_the_real_cli_process_exits_2_without_a_traceback(case, tmp_path):
    text, named = BAD[case]
    path, out = write(tmp_path, text), tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "AutoSegCore", "train", str(DATA), "--config", str(path),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert_one_line_error(r.returncode, r.stderr, path, named)
    assert not out.exists()


def test_search_refuses_a_bad_base_config_before_any_work(tmp_path, capsys):
    path, out = write(tmp_path, "inference: {overlap: 1.5}"), tmp_path / "work"
    code, err = run_cli(capsys, "search", DATA, "--config", path, "--trials", "1", "--out", out)
    assert_one_line_error(code, err, path, "inference.overlap", command="search")
    assert not out.exists()


@pytest.mark.parametrize("text,hint", [
    ("training: {epoch: 1}", "did you mean 'epochs'?"),
    ("network: {chanels: 8}", "did you mean 'channels'?"),
    ("training: {augmentation: {flip_axis: [0]}}", "did you mean 'flip_axes'?"),
    ("network: {arch: emonas, emonas: {nc: 3}}", "did you mean 'n_c'?"),
    ("trainig: {epochs: 1}", "did you mean 'training'?"),
    ("training: {val_every: 0}", "set training.val_every to e.g. 1"),
    ("training: {optimizer: lion}", "set training.optimizer to one of adam, adamw"),
    # YAML surprises: a bare off is false, 1e-3 (no dot) is a string
    ("training: {amp: off}", "quote it, e.g. amp: 'off'"),
    ("training: {lr: 1e-3}", "write lr: 0.001"),
])
def test_hints_say_the_fix(text, hint, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert hint in err.value.hint


def test_the_rule_table_covers_every_key_and_accepts_every_default():
    """RULES has a rule for each key the engine reads (DEFAULT_CONFIG, data/preprocess.py's EXTRA_DEFAULTS, the
    arch sub-sections of networks/validate.py) and nothing else; each default passes its own rule."""
    expected = {**DEFAULT_CONFIG, "preprocessing": {**DEFAULT_CONFIG["preprocessing"], **EXTRA_DEFAULTS},
                "network": {**DEFAULT_CONFIG["network"], **ARCH_DEFAULTS}}

    def walk(rules, defaults, path):
        assert set(rules) == set(defaults), path
        for key, rule in rules.items():
            if isinstance(rule, dict):
                walk(rule, defaults[key], f"{path}.{key}")
            elif isinstance(rule, Rule):
                assert rule.ok(defaults[key]), f"{path}.{key}"
                assert rule.ok(rule.example), f"{path}.{key} example"

    walk(RULES, expected, "config")
    validate_config(make_config({"network": ARCH_DEFAULTS, "preprocessing": EXTRA_DEFAULTS}))
    validate_config(KNOWN_CONFIG)            # every key a search space may set


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    validate_config(cfg, str(path))


def test_forms_the_product_accepts(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({
        "meta": {"note": "free-form"},
        "network": {"arch": "segnas", "dropout": None, "deep_supervision": True, "segnas": {"filters": 8}},
        "preprocessing": {"target_spacing": [1, 1, 2.5], "image_order": 3, "zscore_nonzero": True},
        "training": {"lr": 1, "time_limit": 90, "grad_clip": None, "patch_size": [32, 48, 32], "momentum": 0.9,
                     "amp": "off", "augmentation": {"flip_axes": [0, 2], "gamma_range": [1.0, 1.0]}},
        "inference": {"largest_component": "auto", "overlap": 0, "tta": True},
    }))
    cfg = load_config(path)
    assert cfg["training"]["epochs"] > 50 and cfg["network"]["segnas"] == {"filters": 8}
    path.write_text("inference: {largest_component: [], overlap: 0.25}\ntraining: {augmentation: {flip_axes: []}}\n")
    load_config(path)


@pytest.mark.parametrize("space", list_spaces())
def test_trial_configs_of_every_builtin_space_validate(space, tmp_path):
    """As the search runner builds them: base config < space point, the proxy network of each fidelity, epochs,
    seed and no time limit — then saved as the trial's config.json and read back."""
    s = get_space(space)
    study = optuna.create_study(directions=s.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    base = load_config(REPO / "Resources" / "Configs" / "recipe.yaml")
    checked = 0
    for _ in range(6):
        params = s.suggest(study.ask())
        if not s.is_legal(params):
            continue
        full = s.to_config(params, base)
        for fidelity in (Fidelity.parse(), Fidelity.parse(net="levels=3"), Fidelity.parse(net="width=0.25")):
            config = {**full, "network": fidelity.apply_network(full["network"])}
            config["training"] = {**config["training"], "epochs": 2, "seed": 0, "time_limit": None}
            validate_config(config, "trial")
            path = tmp_path / "config.json"
            path.write_text(json.dumps(config))
            assert load_config(path)["space"] == full["space"]
            checked += 1
    assert checked


def test_a_trained_models_config_loads_again(tmp_path, capsys):
    """model.json of a real (tiny) `autoseg train` run: its config is a valid --config, as YAML and as JSON."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("network: {depth: 2, channels: 4, n_convs: 0}\n"
                   "training: {epochs: 1, steps_per_epoch: 1, batch_size: 1, warmup_steps: 0}\n")
    code, err = run_cli(capsys, "train", DATA, "--config", cfg, "--out", tmp_path / "model", "--val-fraction", "0.2")
    assert code == 0, err
    saved = json.loads((tmp_path / "model" / "model.json").read_text())["config"]
    as_json, as_yaml = tmp_path / "again.json", tmp_path / "again.yaml"
    as_json.write_text(json.dumps(saved))
    as_yaml.write_text(yaml.safe_dump(saved))
    assert load_config(as_json) == load_config(as_yaml) == saved
