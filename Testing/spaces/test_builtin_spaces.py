"""Every built-in space: sampling, configs that validate, networks that run, objectives."""
import math

import optuna
import pytest
import torch

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import build_network, count_parameters, size_divisor
from AutoSegCore.spaces import get_space, list_spaces
from AutoSegCore.spaces.space import _clamped

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUILTINS = ["emonas", "proxy-hpo", "segnas", "segnas4", "segnas7", "unet-pipeline", "unet-recipe"]


def test_builtins_are_listed():
    assert list_spaces() == BUILTINS
    assert get_space("SegNAS11").name == "segnas"


def sample_configs(name, n=20, seed=0):
    space = get_space(name)
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = space.suggest(trial)
        assert set(params) <= set(space.distributions())
        for key, value in params.items():
            assert space.distributions()[key]._contains(space.distributions()[key].to_internal_repr(value))
        out.append((params, space.is_legal(params)))
    return space, out


@pytest.mark.parametrize("name", BUILTINS)
def test_twenty_random_points_give_valid_configs_and_running_networks(name):
    space, points = sample_configs(name)
    legal = [p for p, ok in points if ok]
    assert len(legal) >= 10                      # SegNAS blocks can be illegal; most are not
    for params in points:
        if not params[1]:
            with pytest.raises(ConfigError, match="illegal"):
                space.to_config(params[0])
    for params in legal:
        cfg = space.to_config(params)
        assert cfg["space"] == {"name": space.name, "params": params}
        for p in space.params:
            if p.config and p.name in params and p.config.count(".") == 1:
                section, key = p.config.split(".")
                value = bool(params[p.name]) if p.cast == "bool" else params[p.name]
                if p.relative:                    # no plan: relative to the defaults (depth 4, 16 channels)
                    value = _clamped(p.config, p.applied(value, DEFAULT_CONFIG[section][key]))
                assert cfg[section][key] == value
        net = cfg["network"]
        n_params = count_parameters(net, 1, 3)
        assert n_params > 0
        if n_params > 40_000_000:                 # keep memory and time small: skip the giants
            continue
        div = size_divisor(net)
        # the smallest patch the net accepts with more than one voxel at the bottom (instance norm)
        shape = (max(16, div[0]), max(16, div[1]), max(16, 2 * div[2]))
        model = build_network(net, 1, 3).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, *shape)).shape == (1, 3, *shape)


def test_unet_pipeline_matches_bohb_thesis_table_3_1():
    """The thesis's ranges, relative to the plan: depth 2–6 and channels 8–128 around the CPU plan's 4 levels × 16."""
    space = get_space("unet-pipeline")
    d = space.distributions()
    rel = {p.name: p.relative for p in space.params}
    assert (d["depth"].low, d["depth"].high, rel["depth"]) == (-2, 2, "offset")
    assert (d["channels"].low, d["channels"].high, d["channels"].log, rel["channels"]) == (0.5, 8.0, True, "scale")
    assert (d["patch_scale"].low, d["patch_scale"].high, rel["patch_scale"]) == (0.5, 1.0, "scale")
    assert (d["multiplier"].low, d["multiplier"].high) == (0.5, 3.0)
    assert set(d["conv"].choices) == {"2d", "3d"} and (d["n_convs"].low, d["n_convs"].high) == (0, 3)
    assert len(d["loss"].choices) == 6 and set(d["resampling"].choices) == {"none", "median", "mean"}


def test_unet_recipe_tunes_around_the_base_recipe():
    """Capacity, lr, weight decay, loss and augmentation are searched; everything else is the base config's."""
    space = get_space("unet-recipe")
    d = space.distributions()
    assert (d["channels"].low, d["channels"].high, d["channels"].step) == (1.0, 2.0, 0.5)
    assert "n_convs" not in d and "optimizer" not in d
    import yaml

    from shared_data import REPO

    base = yaml.safe_load((REPO / "Resources" / "Configs" / "recipe.yaml").read_text())   # the shipped recipe
    params = {"depth": 1, "channels": 1.5, "patch_scale": 1.0, "deep_supervision": 1, "lr": 5e-3, "weight_decay": 1e-4,
              "loss": "dice_focal", "rotate_prob": 0.2, "scale_prob": 0.1, "gamma_prob": 0.0, "intensity_shift_prob": 0.7}
    cfg = space.to_config(params, base)                  # no plan: relative to the defaults (4 levels × 16)
    assert (cfg["network"]["depth"], cfg["network"]["channels"], cfg["network"]["deep_supervision"]) == (5, 24, True)
    assert cfg["network"]["n_convs"] == 2 and cfg["network"]["conv"] == "3d"
    assert cfg["training"]["optimizer"] == "adamw" and cfg["training"]["warmup_steps"] == 200
    aug = cfg["training"]["augmentation"]
    assert (aug["rotate_prob"], aug["scale_prob"], aug["flip_axes"], aug["translate"]) == (0.2, 0.1, "auto", 4)
    assert cfg["training"]["loss"] == "dice_focal"


def test_a_space_means_the_same_on_any_dataset_relative_to_its_plan(shared_fingerprints_small):
    """unet-recipe's depth + 1, channels × 1.5 and patch × 0.5 on two very different plans: each lands on its own
    plan's values, with the plan's per-axis poolings re-derived for the new depth and patch."""
    from AutoSegCore.planning.planner import plan_dataset

    space = get_space("unet-recipe")
    params = {"depth": 1, "channels": 1.5, "patch_scale": 0.5, "deep_supervision": 0, "lr": 3e-3, "weight_decay": 1e-5,
              "loss": "dice_ce", "rotate_prob": 0.0, "scale_prob": 0.0, "gamma_prob": 0.0, "intensity_shift_prob": 1.0}
    for fp in shared_fingerprints_small:
        plan = plan_dataset(fingerprint=fp, device="cuda", gpu_memory_gb=8, budget="1h")
        planned = plan["config"]
        cfg = space.to_config(params, {}, plan)
        assert cfg["network"]["depth"] == min(6, planned["network"]["depth"] + 1)
        assert cfg["network"]["channels"] == round(planned["network"]["channels"] * 1.5)
        assert cfg["training"]["patch_size"] == [round(p * 0.5) for p in planned["training"]["patch_size"]]
        assert len(cfg["network"]["strides"]) == cfg["network"]["depth"] - 1
        assert cfg["preprocessing"] == {**cfg["preprocessing"], **{k: planned["preprocessing"][k] for k in
                                                                    ("normalization", "target_spacing", "resampling")}}
        from AutoSegCore.networks.build import build_network

        build_network(cfg["network"], len(fp["channel_names"]), len(fp["labels"]))


def test_proxy_hpo_covers_proxy_paper_grid():
    space = get_space("proxy-hpo")
    d = space.distributions()
    assert set(d["optimizer"].choices) == {"adam", "rmsprop", "adamax", "novograd"}
    for lr in (0.001, 0.0006, 0.0004, 0.0001):
        cfg = space.to_config({"optimizer": "novograd", "lr": lr, "intensity_shift_prob": 0.3})
        assert cfg["training"]["lr"] == lr and cfg["training"]["augmentation"]["intensity_shift_prob"] == 0.3


def test_segnas_variants_fix_what_segnas3d_fixes():
    assert len(get_space("segnas").params) == 11
    s4 = get_space("segnas4")
    assert [p.name for p in s4.params] == ["n", "p", "sup", "res"]
    cfg = s4.to_config({"n": 21, "p": 3, "sup": 1, "res": 0})
    assert cfg["network"]["segnas"]["ops"] == [2, 0, 2] and cfg["network"]["segnas"]["nodes"] == 3
    assert cfg["network"]["deep_supervision"] is True and cfg["network"]["segnas"]["residual"] is False
    s7 = get_space("segnas7")
    assert len(s7.params) == 7
    cfg7 = s7.to_config({"nodes": 4, "op_01": 2, "op_02": 0, "op_03": 0, "op_12": 2, "op_13": 0, "op_23": 2})
    assert (cfg7["network"]["segnas"]["filters"], cfg7["network"]["segnas"]["poolings"]) == (16, 4)
    assert s7.is_legal({"nodes": 3, "op_01": 2, "op_02": 0, "op_03": 0, "op_12": 2, "op_13": 0, "op_23": 0})
    # node 1 has no output when nodes = 3 and op_12 = 0
    assert not s7.is_legal({"nodes": 3, "op_01": 2, "op_02": 2, "op_03": 0, "op_12": 0, "op_13": 0, "op_23": 0})


def test_single_objective_is_validation_dice():
    space = get_space("unet-pipeline")
    assert space.directions == ["maximize"]
    assert space.objectives({"val_dice": 0.83, "num_params": 10_000, "val_dice_per_case": [0.8, 0.86]}) == (0.83,)
    assert space.worst_objectives() == (0.0,)


def test_emonas_objectives_follow_emonas_net():
    space = get_space("emonas")
    assert space.directions == ["minimize", "minimize"]
    result = {"val_dice": 0.80, "train_dice": 0.90, "num_params": 7_000_000,
              "val_dice_history": [0.5, 0.7, 0.82, 0.81, 0.80]}
    f1, f2 = space.objectives(result)
    # α(C − train) + (C − val) + β(E − e_max)/E with α = β = 0.25, C = 1, E = 5, e_max = 3
    assert f1 == pytest.approx(0.25 * 0.10 + 0.20 + 0.25 * 2 / 5)
    assert f2 == pytest.approx(math.log(7_000_000))
    smaller_later = {**result, "num_params": 1_000, "val_dice_history": [0.5, 0.6, 0.7, 0.75, 0.80]}
    g1, g2 = space.objectives(smaller_later)
    assert g1 < f1 and g2 < f2
    worst = space.worst_objectives(num_params=7_000_000)
    assert worst[0] > f1 and worst[1] == pytest.approx(f2)


def test_study_round_trip_with_tpe():
    """Define-by-run through a real Optuna study: ask → suggest → to_config → tell."""
    space = get_space("proxy-hpo")
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.TPESampler(seed=0,
                                                                                                n_startup_trials=5))
    for _ in range(12):
        trial = study.ask()
        cfg = space.to_config(space.suggest(trial))
        # a stand-in score that prefers lr near 3e-4 and adam
        score = 1 - abs(math.log10(cfg["training"]["lr"] / 3e-4)) - 0.1 * (cfg["training"]["optimizer"] != "adam")
        study.tell(trial, score)
    assert len(study.trials) == 12 and study.best_value <= 1


def test_base_config_is_kept_under_the_point():
    space = get_space("unet-pipeline")
    base = {"training": {"epochs": 7}, "inference": {"tta": True}}
    params = {"depth": -1, "channels": 1.0, "patch_scale": 1.0, "multiplier": 2.0, "conv": "3d", "n_convs": 1,
              "normalization": "minmax", "resampling": "none", "loss": "dice"}
    cfg = space.to_config(params, base)
    assert cfg["training"]["epochs"] == 7 and cfg["inference"]["tta"] is True
    assert cfg["preprocessing"]["normalization"] == "minmax" and cfg["network"]["depth"] == 3
    assert cfg["training"]["lr"] == DEFAULT_CONFIG["training"]["lr"]


@pytest.mark.parametrize("params,word", [
    ({"depth": 9}, "depth"),
    ({"depth": 1, "bogus": 1}, "bogus"),
    ({"depth": 1}, "channels"),                       # active parameter without value
    ({"depth": 0.5}, "depth"),
])
def test_bad_points_are_config_errors(params, word):
    with pytest.raises(ConfigError, match=word):
        get_space("unet-pipeline").to_config(params)


@pytest.mark.parametrize("name,dropped", [("unet-pipeline", ["depth", "channels", "n_convs"]),
                                          ("segnas", ["n", "p"]), ("emonas", ["n_c", "n_f"]), ("proxy-hpo", []),
                                          ("unet-recipe", ["depth", "channels"])])
def test_a_proxy_net_search_leaves_out_what_the_proxy_overwrites(name, dropped):
    """Under a proxy net every trial trains the proxy network's depth/width, so those parameters cannot be ranked: the
    space without them samples the rest, and its configs keep the base config's values (the proxy paper: a fixed
    architecture, searched training)."""
    from AutoSegCore.networks import proxy_network
    from AutoSegCore.networks.proxy import PROXY_KEYS
    from AutoSegCore.spaces.paths import get_key

    space = get_space(name)
    reduced, removed = space.without(k for keys in PROXY_KEYS.values() for k in keys)
    assert sorted(removed) == sorted(dropped)
    assert set(reduced.distributions()) == set(space.distributions()) - set(dropped)
    base = space._base_config(None)
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    legal = 0
    for _ in range(10):
        params = reduced.suggest(study.ask())
        if not reduced.is_legal(params):
            continue
        legal += 1
        cfg = reduced.to_config(params)
        for key in PROXY_KEYS[cfg["network"]["arch"]]:
            assert get_key(cfg, key) == get_key(base, key)
        proxy_net = proxy_network(cfg["network"], levels=3)
        assert count_parameters(proxy_net, 1, 3) < count_parameters(cfg["network"], 1, 3)
    assert legal >= 3


def test_the_planned_point_reproduces_the_plan_in_every_space_that_can_express_it(shared_fingerprints_small):
    """A search's first trial is the plan (``SearchSpace.planned_point``): relative parameters at offset 0 /
    scale 1, the others at the plan's values, so its config is the planned recipe's at every key the space sets.
    A space that fixes another network (SegNAS's DAGs, EMONAS) reproduces its own default net over the plan, which
    is not the planned recipe (the search then queues nothing); a base config outside a range has no point."""
    from AutoSegCore.planning.planner import plan_dataset, planned_config
    from AutoSegCore.spaces.paths import get_key

    expressible = set()
    for fp in shared_fingerprints_small:
        plan = plan_dataset(fingerprint=fp, device="cuda", gpu_memory_gb=8, budget="1h")
        recipe = planned_config(plan, {})
        for name in BUILTINS:
            space = get_space(name)
            point = space.planned_point({}, plan)
            if point is None:
                continue
            cfg = space.to_config(point, {}, plan)
            if cfg["network"]["arch"] != recipe["network"]["arch"]:
                continue
            expressible.add(name)
            for p in space.active_params(point):
                if p.config not in ("training.epochs", "training.time_limit"):
                    assert get_key(cfg, p.config) == get_key(recipe, p.config), (name, p.name)
            assert cfg["network"]["depth"] == recipe["network"]["depth"]
            assert cfg["training"]["patch_size"] == recipe["training"]["patch_size"]
    assert {"unet-pipeline", "unet-recipe"} <= expressible
    assert not expressible & {"segnas", "segnas4", "segnas7", "emonas"}
    space = get_space("unet-pipeline")         # its normalisations leave out ct_window: a base config with it has
    assert space.planned_point({"preprocessing": {"normalization": "ct_window"}}, plan) is None     # no point
    assert space.planned_point({"network": {"channels": 4}}, plan)["channels"] == 1.0     # relative: still scale 1
