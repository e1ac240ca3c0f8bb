"""bench/budget_accuracy.py's plumbing without any training: the command each arm runs, the threads, nnU-Net's
epochs fitted to a budget, the time split read from events, and the comparison with its verdicts on synthetic
saved arms."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from shared_data import REPO

sys.path.insert(0, str(REPO / "bench"))
_spec = importlib.util.spec_from_file_location("budget_accuracy", REPO / "bench" / "budget_accuracy.py")
ba = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ba)


# ------------------------------------------------------------------------------------------------ commands
def test_planned_arm_is_autoseg_train_with_the_plan_and_the_time_only(tmp_path):
    cmd = [str(c) for c in ba.arm_command("planned", tmp_path / "pool", tmp_path / "m", tmp_path / "e", 30,
                                          share=0.75)]
    assert cmd[cmd.index("-m") + 1:cmd.index("-m") + 3] == ["AutoSegCore", "train"]
    assert cmd[cmd.index("--time") + 1] == "30m"
    assert "--config" not in cmd and "--no-plan" not in cmd and "--device" not in cmd


def test_search_arm_splits_the_minutes_as_the_cli_defaults_do(tmp_path):
    assert ba.search_share("cpu") == pytest.approx(0.75)       # 1 h search : the plan's 20 min final training
    cmd = [str(c) for c in ba.arm_command("search", tmp_path / "pool", tmp_path / "w", tmp_path / "e", 30,
                                          share=ba.search_share())]
    assert cmd[cmd.index("-m") + 2] == "search"
    assert cmd[cmd.index("--time") + 1] == "22.5m" and cmd[cmd.index("--final-time") + 1] == "7.5m"
    for option in ("--space", "--strategy", "--proxy-data", "--proxy-net", "--jobs", "--config", "--trials"):
        assert option not in cmd                                  # every other option at the CLI's default
    from AutoSegCore.search.settings import parse_duration

    assert parse_duration(cmd[cmd.index("--time") + 1]) + parse_duration(cmd[cmd.index("--final-time") + 1]) == 1800
    jobs = ba.arm_command("search", tmp_path, tmp_path, tmp_path, 2, share=0.75, jobs=2, device="cuda")
    assert "--jobs" in jobs and "--device" in jobs


def test_every_arm_gets_the_same_thread_count():
    env = ba.thread_env(2)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "AUTOSEG_THREADS",
                "AUTOSEG_BENCH_THREADS", "nnUNet_n_proc_DA", "nnUNet_def_n_proc"):
        assert env[key] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert "CUDA_VISIBLE_DEVICES" not in ba.thread_env(1, "cuda")


def test_nnunet_commands_train_fold_all_on_the_cpu_with_the_budget_trainer(tmp_path):
    first = [str(a) for a in ba.nnunet_train_args("3d_fullres", "all", "cpu", resume=False)]
    assert first[:3] == [str(ba.NNUNET_ID), "3d_fullres", "all"]
    assert first[first.index("-tr") + 1] == ba.NNUNET_TRAINER and first[first.index("-device") + 1] == "cpu"
    assert "--c" not in first and "--c" in ba.nnunet_train_args("3d_fullres", "all", "cpu", resume=True)
    pred = [str(a) for a in ba.nnunet_predict_args(tmp_path / "in", tmp_path / "out", "3d_fullres", "all", "cpu", 2)]
    assert pred[pred.index("-f") + 1] == "all" and pred[pred.index("-npp") + 1] == "2"
    assert "--disable_tta" not in pred                            # nnU-Net's default: mirroring TTA
    cmd = ba.nnunet_cmd("/x/python", "nnUNetv2_train", first)
    assert cmd[0] == "/x/python" and "run_training_entry" in cmd[2] and cmd[3:] == first


def test_the_trainer_file_defines_the_named_trainer():
    compile(ba.TRAINER_SOURCE, "trainer", "exec")
    assert f"class {ba.NNUNET_TRAINER}(nnUNetTrainer)" in ba.TRAINER_SOURCE


# ----------------------------------------------------------------------------------------- nnU-Net's epochs
def test_nnunets_schedule_fitted_to_what_is_left_after_the_first_run():
    # first run: one epoch of 10 iterations in 30 s of a 50-s run → 3 s per iteration, 20 s start-up
    fit = ba.fit_nnunet_schedule(remaining_s=80_020, first_run_s=50, first_epoch_s=30, first_iterations=10)
    assert fit["iteration_s"] == pytest.approx(3) and fit["overhead_s"] == pytest.approx(20)
    # 80 000 s hold 106 of nnU-Net's 250-iteration epochs (750 s each): its own epochs, as many as fit
    assert fit["iterations"] == 250 and fit["more"] == 106 and fit["epochs"] == 107
    assert fit["forecast_s"] == pytest.approx(20 + 106 * 750)
    # 1820 s hold fewer than 10 of them: 10 epochs of the iterations that fit (1800 / 10 / 3 = 60)
    short = ba.fit_nnunet_schedule(remaining_s=1820, first_run_s=50, first_epoch_s=30, first_iterations=10)
    assert short["iterations"] == 60 and short["more"] == 10 and short["epochs"] == 11
    assert short["forecast_s"] <= 1820
    # never fewer iterations than the first run's; over budget: the first run's model
    tiny = ba.fit_nnunet_schedule(remaining_s=100, first_run_s=50, first_epoch_s=30, first_iterations=10)
    assert tiny["iterations"] == 10 and tiny["more"] == 2
    assert ba.fit_nnunet_schedule(-50, 50, 30, 10)["epochs"] == 1
    # a smoke run fixes the iterations; nnU-Net's own length at most
    assert ba.fit_nnunet_schedule(1820, 50, 30, 10, iterations=10)["iterations"] == 10
    assert ba.fit_nnunet_schedule(1e12, 50, 30, 10, max_epochs=1000)["epochs"] == 1000


def test_epoch_times_read_from_nnunets_log():
    log = ("2026-12-07 04:20:01: Epoch 0\n2026-12-07 04:21:41: train_loss -0.1\n"
           "2026-12-07 04:21:41: Epoch time: 100.23 s\n2026-12-07 04:23:00: Epoch time: 79 s\n")
    assert ba.nnunet_epoch_seconds(log) == [100.23, 79.0]


# ----------------------------------------------------------------------------------------------- time split
def test_time_split_of_the_planned_arm_from_its_events():
    ev = [{"event": "study_started", "time": 101.0}, {"event": "plan", "time": 106.0},
          {"event": "epoch", "time": 112.0, "seconds": 4.0}, {"event": "epoch", "time": 200.0, "seconds": 4.0},
          {"event": "done", "time": 203.0}]
    t = ba.split_planned(100.0, 205.0, ev)
    assert t == {"planning_preprocessing": 8.0, "search": 0.0, "final_training": 92.0, "other": 5.0}


def test_time_split_of_the_search_arm_from_its_forecast():
    ev = [{"event": "plan", "time": 104.0}, {"event": "forecast", "time": 110.0}]
    forecast = {"actual": {"search_seconds": 60.0, "final_seconds": 25.0}}
    t = ba.split_search(100.0, 200.0, ev, forecast)
    assert t == {"planning_preprocessing": 10.0, "search": 60.0, "final_training": 25.0, "other": 5.0}


def test_planned_forecast_read_from_the_plan():
    plan = {"budget_seconds": 1800.0, "choices": {"epochs": {"why": "83 steps of ≈ 0.54 s per epoch (≈ 40 epochs "
                                                                    "in 30 min, ≈ 37 with validation); validating"}}}
    assert ba.planned_forecast(plan)["epochs"] == 37 and ba.planned_forecast(plan)["training_seconds"] == 1800


def test_subset_is_seeded_and_sorted():
    names = [f"case_{i:03d}" for i in range(40)]
    a, b = ba.subset(names, 7, 0), ba.subset(names, 7, 0)
    assert a == b == sorted(a) and len(set(a)) == 7 and set(a) <= set(names)
    assert ba.subset(names, None, 0) == names and ba.subset(names, 99, 0) == names


# ---------------------------------------------------------------------------------------------------- compare
def _arm(arm: str, dice: dict[str, float], seconds=(30.0, 0.0, 1750.0, 20.0)) -> dict:
    cases = sorted(dice)
    return {"bench": "budget_accuracy", "dataset": "Prostate_PROMISE12", "arm": arm, "minutes": 30.0, "seed": 0,
            "threads": 2, "device": "cpu", "pool": ["p1", "p2"], "holdout": cases, "started": "2026-12-07T00:00:00",
            "machine": {"cores": 2}, "load_before": [0.1, 0.1, 0.1], "load_after": [2.0, 2.0, 2.0],
            "non_default": {}, "model": f"{arm} model", "wall_seconds": sum(seconds), "predict_seconds": 40.0,
            "time": dict(zip(("planning_preprocessing", "search", "final_training", "other"), seconds)),
            "forecast": {"text": f"{arm} forecast", "training_seconds": 1800.0, "epochs": 37, "search_seconds": 1350.0,
                         "final_seconds": 450.0, "total_seconds": 1800.0},
            "actual": {"training_seconds": 1750.0, "epochs": 35, "search_seconds": 1360.0, "final_seconds": 470.0,
                       "wall_seconds": sum(seconds)},
            "score": {"mean_dice": float(np.mean(list(dice.values()))), "per_case": dice,
                      "per_class": {"prostate": float(np.mean(list(dice.values())))},
                      "per_class_per_case": {"prostate": dice}}}


def _save(folder, arm, dice):
    (folder / f"budget_accuracy_Prostate_PROMISE12_{arm}.json").write_text(json.dumps(_arm(arm, dice)))


def test_compare_pairs_per_case_and_checks_the_verdicts(tmp_path):
    cases = [f"prostate_{i:02d}" for i in range(10)]
    rng = np.random.default_rng(0)
    planned = {c: 0.80 + 0.01 * i for i, c in enumerate(cases)}
    search = {c: planned[c] + 0.06 + rng.normal(0, 0.002) for c in cases}     # ≈ 0.905 ≥ 0.85, above planned
    nnunet = {c: 0.30 for c in cases}
    results = tmp_path / "results"
    results.mkdir()
    data = tmp_path / "Prostate_PROMISE12"
    args = ["--data", str(data), "--arm", "compare", "--results", str(results)]
    _save(results, "planned", planned)
    assert ba.main(args) == 0                         # one arm: nothing failed, the rest not measured
    text = (results / "budget_accuracy_Prostate_PROMISE12_compare.txt").read_text()
    assert "not measured" in text and "incomplete" in text
    _save(results, "search", search)
    _save(results, "nnunet", nnunet)
    assert ba.main(args) == 0
    text = (results / "budget_accuracy_Prostate_PROMISE12_compare.txt").read_text()
    assert "| search − planned | 10 | +0.06" in text and "10/10" in text
    assert text.count("| PASS |") == 4 and "overall: PASS" in text
    assert "| planned: training (37 → 35 epochs) | 1800 | 1750 | 0.97 |" in text
    assert "| search: search | 1350 | 1360 | 1.01 |" in text
    # the search a little below the planned recipe on every case: the paired lower bound fails, and 0.85 too
    _save(results, "search", {c: planned[c] - 0.01 for c in cases})
    assert ba.main(args) == 1
    text = (results / "budget_accuracy_Prostate_PROMISE12_compare.txt").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[4].strip() for line in text.splitlines()
            if line.startswith("| ") and line.count("|") == 5}
    assert rows["search never below the planned recipe (paired 95 % lower bound)"] == "FAIL"
    assert rows["search held-out mean Dice"] == "FAIL"
    assert rows["planned above nnU-Net (held-out mean Dice)"] == "PASS"
    assert "overall: FAIL" in text


def test_compare_warns_when_the_arms_were_not_run_alike(tmp_path):
    a, b = _arm("planned", {"c1": 0.8, "c2": 0.7}), _arm("search", {"c1": 0.8, "c2": 0.7})
    b["minutes"] = 2.0
    text, failed = ba.compare_text({"planned": a, "search": b}, "Task04_Hippocampus")
    assert "WARNING: the arms differ in minutes" in text and not failed
    assert "≥ 0.85" not in text                      # the 0.85 target is Prostate's alone


# --------------------------------------------------------------------------------------------- the pool folder
def test_pool_folder_links_its_cases_with_relative_entries(tmp_path):
    """The engine refuses dataset.json entries that are absolute or leave the folder; the pool links them in."""
    import nibabel as nib

    from AutoSegCore.data.dataset import load_dataset

    src = tmp_path / "Task99_Tiny"
    for sub in ("imagesTr", "labelsTr"):
        (src / sub).mkdir(parents=True)
    training = []
    for i in range(4):
        img = np.random.default_rng(i).normal(size=(8, 8, 8)).astype(np.float32)
        lab = np.zeros((8, 8, 8), np.uint8)
        lab[2:5, 2:5, 2:5] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(src / "imagesTr" / f"tiny_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(src / "labelsTr" / f"tiny_{i}.nii.gz"))
        training.append({"image": f"./imagesTr/tiny_{i}.nii.gz", "label": f"./labelsTr/tiny_{i}.nii.gz"})
    (src / "dataset.json").write_text(json.dumps({"name": "Tiny", "modality": {"0": "MRI"},
                                                  "labels": {"0": "background", "1": "thing"},
                                                  "numTraining": 4, "training": training}))
    pool = ba.pool_dataset(src, tmp_path / "pool", ["tiny_0", "tiny_2"])
    meta = json.loads((pool / "dataset.json").read_text())
    assert [e["image"] for e in meta["training"]] == ["./imagesTr/tiny_0.nii.gz", "./imagesTr/tiny_2.nii.gz"]
    assert (pool / "labelsTr" / "tiny_2.nii.gz").is_symlink()
    assert sorted(c.name for c in load_dataset(pool).cases) == ["tiny_0", "tiny_2"]
    ba.pool_dataset(src, tmp_path / "pool", ["tiny_1"])                  # re-used: the old links go
    assert sorted(p.name for p in (pool / "imagesTr").iterdir()) == ["tiny_1.nii.gz"]


def test_a_fail_on_numpy_figures_is_a_fail(tmp_path):
    """Paired bounds are numpy floats: their comparisons must still count as FAIL (exit 1)."""
    cases = {f"h{i}": 0.85 + 0.01 * (i % 3) for i in range(6)}
    arms = {"planned": _arm("planned", cases),
            "search": _arm("search", {c: v - 0.02 - 0.001 * i for i, (c, v) in enumerate(cases.items())}),
            "nnunet": _arm("nnunet", {c: 0.3 for c in cases})}
    text, failed = ba.compare_text(arms, "Task04_Hippocampus")
    assert failed and "overall: FAIL" in text
    v = ba.verdicts(arms, "Task04_Hippocampus")
    assert [x["verdict"] for x in v] == [False, True, True] and all(type(x["verdict"]) is bool for x in v)
