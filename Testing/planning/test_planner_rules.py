"""The planner's rules on synthetic fingerprints (isotropic, one coarse axis, few slices, a tiny dataset, a
512×512×300 CT, four channels) and on every shared dataset: what it decides, and that the planned net builds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from AutoSegCore.config import make_config
from AutoSegCore.planning import cost, rules
from AutoSegCore.planning.planner import plan_dataset, planned_config, topology_for_depth


def synthetic_fp(shapes, spacings, *, modality="MR", channels=1, label_voxels=5000, cropped=None) -> dict:
    """A fingerprint as data/fingerprint.py writes it, for cases of these shapes and spacings."""
    cases = [{"name": f"case_{i:03d}", "shape": list(sh), "spacing": list(sp),
              "cropped_shape": list(cropped[i] if cropped else sh), "intensity": [],
              "label_voxels": {"1": label_voxels}} for i, (sh, sp) in enumerate(zip(shapes, spacings))]
    sp = np.array(spacings, dtype=float)
    return {"dataset": "synthetic", "num_cases": len(cases), "modality": modality,
            "channel_names": [modality] * channels, "labels": {"0": "background", "1": "organ"},
            "spacing": {"median": np.median(sp, 0).tolist()}, "shape": {"median": np.median(shapes, 0).tolist()},
            "label_stats": {"1": {"name": "organ", "voxels_mean": float(label_voxels)}}, "cases": cases}


def pools(strides) -> list[int]:
    return [sum(1 for s in strides if s[a] == 2) for a in range(3)]


def gpu_plan(fp, gb=8.0) -> dict:
    return plan_dataset(fingerprint=fp, device="cuda", gpu_memory_gb=gb, budget="1h")


def test_isotropic_ct_pools_every_axis_alike_and_normalises_by_foreground_percentiles():
    fp = synthetic_fp([(128, 128, 128)] * 20, [(1.0, 1.0, 1.0)] * 20, modality="CT")
    plan = gpu_plan(fp)
    net = plan["config"]["network"]
    assert plan["choices"]["target_spacing"]["value"] == [1.0, 1.0, 1.0]
    assert plan["config"]["preprocessing"]["resampling"] == "none"          # every case already at the target
    assert len(set(pools(net["strides"]))) == 1 and net["depth"] == len(net["strides"]) + 1
    assert all(k == [3, 3, 3] for k in net["kernels"])
    assert plan["config"]["preprocessing"]["normalization"] == "percentile_zscore"
    patch = plan["config"]["training"]["patch_size"]
    assert all(p <= 128 for p in patch) and len(set(patch)) == 1


def test_one_coarse_axis_gets_the_tenth_percentile_spacing_and_no_pooling_until_within_2x():
    z = [3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 6.0, 5.0, 4.5, 5.0]
    fp = synthetic_fp([(320, 320, 30)] * 10, [(0.7, 0.7, s) for s in z])
    spacing, why = rules.target_spacing(fp)
    assert spacing[:2] == [0.7, 0.7] and spacing[2] == pytest.approx(np.percentile(z, 10)) and "anisotropic" in why
    plan = gpu_plan(fp)
    net = plan["config"]["network"]
    assert net["strides"][0] == [2, 2, 1] and net["kernels"][0] == [3, 3, 1]
    # z is pooled only once in-plane spacing has caught up: 0.7 → 1.4 → 2.8 (within 2× of 3.9)
    first_z = next(i for i, s in enumerate(net["strides"]) if s[2] == 2)
    assert 0.7 * 2 ** first_z * 2 > spacing[2] and first_z >= 2
    assert plan["config"]["preprocessing"]["resampling"] == "median"
    assert plan["config"]["preprocessing"]["target_spacing"] == spacing


def test_few_slices_plan_a_2d_net_along_that_axis():
    fp = synthetic_fp([(256, 256, 6)] * 8, [(0.5, 0.5, 0.5)] * 8)
    plan = gpu_plan(fp)
    net = plan["config"]["network"]
    assert all(s[2] == 1 for s in net["strides"]) and all(k[2] == 1 for k in net["kernels"])
    assert plan["choices"]["network"]["two_d_axis"] == 2 and "2D along axis 2" in plan["choices"]["network"]["why"]


def test_tiny_dataset_batch_is_at_least_two_and_the_patch_no_larger_than_needed():
    fp = synthetic_fp([(32, 40, 24), (36, 44, 28)], [(1.0, 1.0, 1.0)] * 2)
    plan = gpu_plan(fp)
    t = plan["config"]["training"]
    assert t["batch_size"] == 2                        # 5 % of two small cases is < 1 patch: the floor holds
    divisor = [math.prod(s[a] for s in plan["config"]["network"]["strides"]) for a in range(3)]
    assert all(p % d == 0 for p, d in zip(t["patch_size"], divisor))
    assert all(p <= m + d for p, m, d in zip(t["patch_size"], [34, 42, 26], divisor))


def test_large_ct_patch_fits_the_memory_target_and_shrinks_with_it():
    fp = synthetic_fp([(512, 512, 300)] * 30, [(0.8, 0.8, 1.5)] * 30, modality="CT")
    big, small = gpu_plan(fp, 24.0), gpu_plan(fp, 8.0)
    for plan, gb in ((big, 24.0), (small, 8.0)):
        net, t = plan["config"]["network"], plan["config"]["training"]
        elements = cost.feature_map_elements(net["strides"], t["patch_size"], net["channels"], net["max_channels"], 2)
        assert cost.batch_in_memory(elements, gb * 2 ** 30) >= t["batch_size"] >= 2
        assert all(p < m for p, m in zip(t["patch_size"], [512, 512, 300]))
    assert math.prod(big["config"]["training"]["patch_size"]) > math.prod(small["config"]["training"]["patch_size"])
    # 0.8 vs 1.5 mm is within 2×: pooled from the first level on, along every axis
    assert small["config"]["network"]["strides"][0] == [2, 2, 2]


def test_four_channels_build_and_mask_normalisation_for_a_small_nonzero_box():
    shapes = [(160, 192, 150)] * 6
    fp = synthetic_fp(shapes, [(1.0, 1.0, 1.0)] * 6, channels=4, cropped=[(120, 140, 110)] * 6)
    plan = gpu_plan(fp)
    assert plan["config"]["preprocessing"] == {**plan["config"]["preprocessing"], "normalization": "zscore",
                                               "zscore_nonzero": True, "crop_foreground": True}
    from AutoSegCore.networks.build import build_network

    assert build_network(plan["config"]["network"], 4, 2) is not None


def test_small_structures_get_more_foreground_crops():
    fp = synthetic_fp([(256, 256, 64)] * 10, [(1.0, 1.0, 1.0)] * 10, label_voxels=40)
    assert gpu_plan(fp)["config"]["training"]["augmentation"]["foreground_oversample"] == 0.5
    fp = synthetic_fp([(64, 64, 64)] * 10, [(1.0, 1.0, 1.0)] * 10, label_voxels=20000)
    assert gpu_plan(fp)["config"]["training"]["augmentation"]["foreground_oversample"] == pytest.approx(1 / 3, abs=1e-3)


def test_a_config_over_the_plan_keeps_the_plans_per_axis_shape_at_its_own_depth():
    fp = synthetic_fp([(320, 320, 30)] * 10, [(0.7, 0.7, 4.0)] * 10)
    plan = gpu_plan(fp)
    cfg = planned_config(plan, {"network": {"depth": 3, "channels": 8}, "training": {"epochs": 1}})
    assert cfg["network"]["depth"] == 3 and len(cfg["network"]["strides"]) == 2
    assert cfg["network"]["strides"] == plan["config"]["network"]["strides"][:2]
    assert cfg["training"]["patch_size"] == plan["config"]["training"]["patch_size"]
    deeper = planned_config(plan, {"network": {"depth": 6}})
    assert len(deeper["network"]["strides"]) == 5
    other = planned_config(plan, {"network": {"arch": "segnas"}})
    assert other["network"]["kernels"] is None and other["network"]["strides"] is None
    make_config(cfg)


def test_topology_for_a_depth_the_patch_cannot_pool_that_often_still_builds():
    strides, kernels = topology_for_depth([1.0, 1.0, 1.0], [16, 16, 16], 6)
    assert len(strides) == 5 and len(kernels) == 6
    from AutoSegCore.networks.build import build_network, size_divisor

    net = {"arch": "unet", "depth": 6, "channels": 4, "strides": strides, "kernels": kernels}
    build_network(net, 1, 2)
    assert all(16 % d == 0 for d in size_divisor(net))


def test_every_shared_dataset_gets_a_valid_buildable_plan(shared_fingerprints):
    import torch

    from AutoSegCore.networks.build import build_network

    for name, fp in shared_fingerprints.items():
        plan = gpu_plan(fp)
        cfg = make_config(plan["config"])
        net = build_network(cfg["network"], len(fp["channel_names"]), len(fp["labels"]))
        patch = cfg["training"]["patch_size"]
        with torch.device("meta"):
            out = net.to("meta")(torch.empty(1, len(fp["channel_names"]), *patch))
        assert list(out.shape[2:]) == patch, name
        assert set(plan["choices"]) >= {"target_spacing", "patch_size", "batch_size", "network", "normalization",
                                        "epochs", "foreground_oversample"}
        assert all(c["why"] for c in plan["choices"].values())


def test_the_shipped_recipe_file_is_the_planners_recipe():
    import yaml

    from AutoSegCore.planning.planner import RECIPE
    from shared_data import REPO

    assert yaml.safe_load((REPO / "Resources" / "Configs" / "recipe.yaml").read_text()) == RECIPE


def test_a_cpu_patch_shrinks_around_the_labelled_structure_first():
    """A gland spanning most of 24 slices in 160×160 slices: the reduction keeps the slices (the structure's axis)
    and shrinks in-plane first; without label boxes (an old fingerprint) nnU-Net's order shrinks every axis."""
    shapes = [(160, 160, 24)] * 10
    fp = synthetic_fp(shapes, [(1.0, 1.0, 1.0)] * 10)
    for i, c in enumerate(fp["cases"]):
        c["label_box"] = [40 + 5 * i, 35 + 4 * i, 14 + i]
    median = [160, 160, 24]
    extent = rules.structure_extent(fp, [1.0, 1.0, 1.0], median)
    assert extent == [int(math.ceil(np.percentile([40 + 5 * i for i in range(10)], 90))),
                      int(math.ceil(np.percentile([35 + 4 * i for i in range(10)], 90))),
                      int(math.ceil(np.percentile([14 + i for i in range(10)], 90)))]
    patch, divisor = [160, 160, 24], [16, 16, 4]
    with_floor, without = list(patch), list(patch)
    for _ in range(8):
        with_floor = rules.reduce_patch(with_floor, median, divisor, extent)
        without = rules.reduce_patch(without, median, divisor)
    assert with_floor[2] == 24 and rules.holds(with_floor, extent)       # the slices kept, in-plane shrunk
    assert without[2] < 24                                                # nnU-Net's order cuts the slices too
    # once every axis is at its floor the floor gives way (a patch can always shrink to fit)
    at_floor = [max(e, d) for e, d in zip(extent, divisor)]
    assert rules.reduce_patch(at_floor, median, divisor, extent) is not None
    # the extent is in target voxels: a case at twice the spacing spans twice the voxels
    fp2 = synthetic_fp([(80, 80, 24)], [(2.0, 2.0, 1.0)])
    fp2["cases"][0]["label_box"] = [20, 20, 10]
    assert rules.structure_extent(fp2, [1.0, 1.0, 1.0], [160, 160, 24]) == [40, 40, 10]
    assert rules.structure_extent(synthetic_fp(shapes, [(1.0, 1.0, 1.0)] * 10), [1.0] * 3, median) is None


def test_fingerprint_records_each_cases_labelled_box(shared_fingerprints):
    fp = shared_fingerprints["Task04_Hippocampus"]
    for c in fp["cases"]:
        assert all(1 <= b <= s for b, s in zip(c["label_box"], c["shape"]))
    # the GPU plan ignores it (nnU-Net's patch, bench/plans.py); the extent is offered to the CPU plan only
    assert "structure_extent" not in gpu_plan(fp)["choices"]


def test_scaling_augmentation_when_structure_sizes_vary_between_cases(shared_fingerprints):
    """Sizes 2.35× apart between the smallest and the largest case (several sites, wrong header spacings): a zoom
    that reaches both from the median, √2.35 = 1.53× either way; a 9× spread is capped at 1.6×; one size: the
    recipe's (none)."""
    fp = synthetic_fp([(100, 100, 40)] * 10, [(1.0, 1.0, 1.0)] * 10)
    for i, c in enumerate(fp["cases"]):
        c["label_box"] = [20 + 3 * i] * 3                        # 20 … 47 voxels across
    aug, why = rules.size_augmentation(fp)
    assert aug == {"scale_prob": 0.3, "scale_range": 0.53} and "2.35× smallest to largest" in why
    fp["cases"][0]["label_box"] = [5, 5, 5]                      # one case 9.4× smaller than the largest
    assert rules.size_augmentation(fp)[0] == {"scale_prob": 0.3, "scale_range": rules.MAX_SCALE_RANGE}
    for c in fp["cases"]:
        c["label_box"] = [20, 21, 19]
    assert rules.size_augmentation(fp)[0] == {}
    plan = gpu_plan(fp)
    assert plan["choices"]["augmentation"]["value"] == {}
    assert make_config(plan["config"])["training"]["augmentation"]["scale_prob"] == 0.0
    # the shared data: Prostate_PROMISE12's glands span 2.1× between its cases (1 mm headers for 0.3–0.8 mm
    # scans); Hippocampus' crops are one size (1.16×)
    prostate = gpu_plan(shared_fingerprints["Prostate_PROMISE12"])
    assert prostate["config"]["training"]["augmentation"]["scale_prob"] == 0.3
    assert gpu_plan(shared_fingerprints["Task04_Hippocampus"])["choices"]["augmentation"]["value"] == {}
