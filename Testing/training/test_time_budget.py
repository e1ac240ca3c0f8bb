"""Wall-clock-budgeted training (training.time_limit, `autoseg train --time`, `autoseg search --final-time`).

The budget is real time on a shared machine, so the bounds are wide: what must hold is that the run stops near
its budget and not at the epoch cap, that its lr schedule ends there, and that a resumed run keeps its horizon
and spends only what is left.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from shared_data import SPLEEN
from trainkit import tiny_config
from AutoSegCore.config import EPOCH_CAP_WITH_TIME_LIMIT, load_config, make_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.training.api import train_model
from AutoSegCore.training.trainer import StopTraining

LIMIT = 6.0
LR = 3e-3


def _budget_config() -> dict:
    cfg = tiny_config(time_limit=LIMIT, val_every=10_000, lr=LR)
    del cfg["training"]["epochs"]                       # "train for 6 s", no epoch count
    return cfg


def _cases(hippo):
    names = sorted(c.name for c in hippo.cases)
    return dict(train_cases=names[:6], val_cases=names[6:8])


def test_a_time_limited_run_ends_its_schedule_on_the_budget(hippo, tmp_path):
    result = train_model(hippo, _budget_config(), tmp_path / "m", **_cases(hippo))
    spent = sum(r["seconds"] for r in result.history)
    longest = max(r["seconds"] for r in result.history)
    assert 3 <= result.epochs_done < EPOCH_CAP_WITH_TIME_LIMIT
    assert 0.6 * LIMIT <= spent <= LIMIT + 2 * longest + 1.0, (spent, result.epochs_done)
    horizons = [r["horizon"] for r in result.history]
    assert horizons[0] < EPOCH_CAP_WITH_TIME_LIMIT            # re-fitted after the first epoch
    last = result.history[-1]
    assert last["epoch"] == result.epochs_done
    assert last["lr"] <= 0.25 * LR, [(r["epoch"], r["horizon"], r["lr"]) for r in result.history]
    # validated once, at the end, and saved as a finished model
    assert [r["epoch"] for r in result.history if "val_dice" in r] == [result.epochs_done]
    assert result.val_dice > 0 and (tmp_path / "m" / "model.pt").is_file()


def test_a_resumed_time_limited_run_keeps_its_horizon_and_spends_only_what_is_left(hippo, tmp_path):
    def stop_past_half(epoch, record):
        if epoch >= 3 and epoch >= 0.6 * record["horizon"]:
            raise StopTraining

    part = train_model(hippo, _budget_config(), tmp_path / "m", callback=stop_past_half, **_cases(hippo))
    assert not (tmp_path / "m" / "model.pt").exists()
    stopped = part.history[-1]
    assert stopped["lr"] < 0.8 * LR                          # well into the cosine
    resumed = train_model(hippo, _budget_config(), tmp_path / "m", **_cases(hippo))
    first = resumed.history[part.epochs_done]
    # the schedule continues where it was (a horizon reset to the epoch cap would jump back to ≈ the base lr)
    assert first["lr"] <= 1.1 * stopped["lr"], (stopped, first)
    spent = sum(r["seconds"] for r in resumed.history)
    longest = max(r["seconds"] for r in resumed.history)
    assert spent <= LIMIT + 2 * longest + 1.0
    assert resumed.epochs_done > part.epochs_done and (tmp_path / "m" / "model.pt").is_file()
    # a finished run re-run with the same folder trains no further epoch
    again = train_model(hippo, _budget_config(), tmp_path / "m", **_cases(hippo))
    assert again.epochs_done == resumed.epochs_done


def test_time_limit_config(tmp_path):
    assert make_config({"training": {"time_limit": 60}})["training"]["epochs"] == EPOCH_CAP_WITH_TIME_LIMIT
    assert make_config({"training": {"time_limit": 60, "epochs": 7}})["training"]["epochs"] == 7
    assert make_config({"training": {"epochs": 7}})["training"]["time_limit"] is None
    path = tmp_path / "budget.yaml"
    path.write_text("training: {time_limit: 90}\n")
    assert load_config(path)["training"]["epochs"] == EPOCH_CAP_WITH_TIME_LIMIT
    for bad in (0, -5, True, "1h"):
        with pytest.raises(ConfigError, match="time_limit"):
            make_config({"training": {"time_limit": bad}})
    with pytest.raises(ConfigError, match="final_time = 0 must be a positive number of seconds"):
        SearchSettings(data=".", out=str(tmp_path / "s"), final_time=0)


@pytest.mark.parametrize("command", [["train", SPLEEN, "--time", "soon"], ["train", SPLEEN, "--time", "0"],
                                     ["search", SPLEEN, "--final-time", "later"]])
def test_bad_budgets_on_the_command_line_are_one_line_errors(tmp_path, command):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "AutoSegCore", *map(str, command), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert ("duration" in r.stderr or "time_limit" in r.stderr) and not out.exists()
