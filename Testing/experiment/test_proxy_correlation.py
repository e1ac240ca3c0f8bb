"""The proxy-correlation experiment on a real 12-case Hippocampus subset with tiny nets (1 epoch × 2 steps)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from AutoSegCore.cli import main
from AutoSegCore.errors import ConfigError
from AutoSegCore.proxy.experiment import correlation, format_table, grid_configs, run_proxy_correlation
from shared_data import make_subset

torch.set_num_threads(1)

TINY_NET = {"network": {"channels": 8, "depth": 2, "n_convs": 1}, "training": {"batch_size": 2}}
GRID = {"optimizer": ["adam", "rmsprop"], "lr": [1e-3]}
RUNGS = ["full", "mi@4", "mi+roi@4", "ncc@4", "ncc+roi@4", "random@4", "net5", "net4", "net3"]


def tiny_run(data: Path, out: Path):
    return run_proxy_correlation(data, out, grid=GRID, epochs=1, steps_per_epoch=2, budget=4, seed=0,
                                 base_config=TINY_NET, device="cpu")


@pytest.fixture(scope="module")
def hippo12(tmp_path_factory) -> Path:
    return make_subset(tmp_path_factory.mktemp("hippo12"), 12)


@pytest.fixture(scope="module")
def first_run(hippo12, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    return tiny_run(hippo12, out)


@pytest.mark.slow
def test_results_hold_every_rung_and_finite_or_explained_correlations(first_run):
    data = json.loads((first_run.out_dir / "results.json").read_text())
    assert first_run.trained == 2 * len(RUNGS) and first_run.skipped == 0
    assert list(data["summary"]) == RUNGS
    assert len(data["runs"]) == 2 * len(RUNGS)
    for key, row in data["summary"].items():
        assert 0.0 <= row["dice_mean"] <= 1.0 and row["seconds_mean"] > 0
        if key == "full":
            continue
        for name in ("pearson", "spearman"):
            value = row[name]
            # the documented NaN rule: a correlation is either a finite number in [-1, 1] or null + a reason
            assert (value is not None and math.isfinite(value) and -1 - 1e-9 <= value <= 1 + 1e-9) or \
                row.get("undefined"), (key, row)
    for png in ("correlation.png", "dice_vs_data.png"):
        assert (first_run.out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mi+roi@4 |" in format_table(data)


@pytest.mark.slow
def test_held_back_cases_never_train_and_proxies_use_the_budget(first_run):
    data = first_run.data
    test, pool = set(data["split"]["test"]), set(data["split"]["pool"])
    assert test and not test & pool and len(test | pool) == 12
    for key, sel in data["selections"].items():
        assert len(sel["selected"]) == 4 and set(sel["selected"]) <= pool
        assert len(sel["train"]) == 2                                   # the proxy paper's 50/50 split of the budget
    by_rung = {r["rung"]: r for r in data["runs"]}
    assert by_rung["full"]["train_cases"] == len(pool)
    assert by_rung["mi@4"]["train_cases"] == 2
    # proxy nets are the proxy paper's shrink: fewer parameters the fewer levels
    assert by_rung["net3"]["num_params"] < by_rung["net4"]["num_params"] < by_rung["net5"]["num_params"]
    # MI and NCC rank cases differently from random on real data (the selections are not all the same)
    assert len({tuple(s["selected"]) for s in data["selections"].values()}) > 1


@pytest.mark.slow
def test_resume_skips_done_runs_and_redoes_only_missing_ones(first_run, hippo12):
    again = tiny_run(hippo12, first_run.out_dir)
    assert (again.trained, again.skipped) == (0, 2 * len(RUNGS))
    timing = ("selection_seconds",)          # re-reading a cached pairwise matrix takes another few ms
    strip = lambda summary: {k: {f: v for f, v in row.items() if f not in timing} for k, row in summary.items()}
    assert strip(again.summary) == strip(first_run.summary)
    (first_run.out_dir / "runs" / "rmsprop-lr0.001" / "net3" / "result.json").unlink()
    third = tiny_run(hippo12, first_run.out_dir)
    assert (third.trained, third.skipped) == (1, 2 * len(RUNGS) - 1)


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(first_run, hippo12):
    with pytest.raises(ConfigError, match="other settings"):
        run_proxy_correlation(hippo12, first_run.out_dir, grid=GRID, epochs=2, steps_per_epoch=2, budget=4,
                              base_config=TINY_NET, device="cpu")


def test_correlation_nan_rule():
    assert correlation([0.5, 0.6, 0.7], [0.1, 0.2, 0.4])["pearson"] == pytest.approx(0.9819805, abs=1e-6)
    flat = correlation([0.5, 0.6, 0.7], [0.3, 0.3, 0.3])
    assert flat["pearson"] is None and flat["spearman"] is None and "zero variance" in flat["undefined"]
    assert correlation([0.5], [0.5])["pearson"] is None


def test_grids_follow_proxy_paper():
    assert len(grid_configs("small")) == 6
    paper = grid_configs("paper")
    assert len(paper) == 16 and {c["optimizer"] for c in paper} == {"adam", "rmsprop", "adamax", "novograd"}
    with pytest.raises(ConfigError):
        grid_configs({"optimizer": ["lbfgs"], "lr": [1e-3]})


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "1"], "budget"),
    (["--budget", "lots"], "--budget 'lots'"),
    (["--epochs", "0"], "argument --epochs: must be a whole number ≥ 1, not 0"),
])
def test_cli_bad_input_exits_2_without_traceback_or_output(hippo12, tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    try:
        code = main(["experiment", "proxy-correlation", str(hippo12), "--out", str(out), *argv])
    except SystemExit as exc:               # refused by argparse where it is typed (its usage line, no hint)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and ("hint:" in err or "usage:" in err) and "Traceback" not in err
    assert not (out / "results.json").exists()


def test_cli_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = main(["experiment", "proxy-correlation", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "Traceback" not in err


def test_rung_keys_name_the_width_rule_and_stay_unique():
    """Width rungs are labelled by their rule (not 'netNone'); the proxy paper's levels keys are unchanged."""
    from AutoSegCore.proxy.experiment import Rung
    from AutoSegCore.proxy.fidelity import Fidelity

    rungs = {spec: Rung(Fidelity.parse(*spec)) for spec in [
        ("full", "full"), ("full", "levels=3"), ("full", "width=0.25"), ("full", "levels=3,width=0.25"),
        ("mi+roi:0.25", "full"), ("mi+roi:0.25", "levels=3"), ("mi+roi:0.25", "levels=3,width=0.25")]}
    keys = {spec: r.key for spec, r in rungs.items()}
    assert keys == {("full", "full"): "full", ("full", "levels=3"): "net3", ("full", "width=0.25"): "netw0.25",
                    ("full", "levels=3,width=0.25"): "net3w0.25", ("mi+roi:0.25", "full"): "mi+roi@0.25",
                    ("mi+roi:0.25", "levels=3"): "mi+roi@0.25/net3",
                    ("mi+roi:0.25", "levels=3,width=0.25"): "mi+roi@0.25/net3w0.25"}
    assert rungs[("full", "width=0.25")].method == "netw0.25"
    assert not any("None" in r.slug for r in rungs.values())
