"""`autoseg demo` end to end on the bundled cases: search → final model → predictions → metrics and report.

The product's first command (`make demo`); here with fewer trials and a short wall-clock final so it fits
the suite. The demo's 5 held-out cases must never reach the search or the final training.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from searchkit import autoseg, events
from shared_data import REPO

pytestmark = pytest.mark.slow
DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"


def test_demo_runs_search_final_training_and_report(tmp_path):
    out, ev = tmp_path / "demo", tmp_path / "events.jsonl"
    r = autoseg("demo", "--out", out, "--trials", "3", "--final-time", "60s", "--events", ev, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "held-out mean Dice" in r.stdout + r.stderr

    names = sorted(p.name[:-len(".nii.gz")] for p in (DEMO / "imagesTr").glob("*.nii.gz"))
    held_out = names[::4]
    assert len(names) == 20 and len(held_out) == 5
    search = json.loads((out / "search" / "search.json").read_text())
    proxy_data = json.loads((out / "search" / "proxy.json").read_text())
    assert not set(held_out) & set(search["train_cases"] + search["val_cases"] + proxy_data["selected"])
    final = json.loads((out / "search" / "final" / "final.json").read_text())
    member = final["members"][0]
    assert not set(held_out) & set(member["train_cases"] + member["val_cases"])

    # the winner is retrained with the full network, to the --final-time budget
    best_info = json.loads((out / "search" / "best" / "model.json").read_text())
    assert best_info["config"]["training"]["time_limit"] == 60.0
    assert best_info["config"]["network"]["channels"] == 16 and best_info["config"]["network"]["depth"] == 4
    history = json.loads((out / "search" / "best" / "history.json").read_text())
    assert len(history) > 1 and sum(h["seconds"] for h in history) < 60.0 + 2 * max(h["seconds"] for h in history) + 1

    # predictions of the held-out cases in both formats, on the images' own grids
    for n in held_out:
        pred = nib.load(str(out / "predictions" / f"{n}.nii.gz"))
        assert pred.shape == nib.load(str(DEMO / "imagesTr" / f"{n}.nii.gz")).shape
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
        assert (out / "predictions" / f"{n}.seg.nrrd").is_file()

    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["cases"]) == held_out
    assert set(metrics["dice_per_class"]) == {"Anterior", "Posterior"}
    assert metrics["mean_dice"] > 0.3                   # a trained model (0.52 after 25 s here), not an empty mask
    assert metrics["search"]["counts"]["COMPLETE"] + metrics["search"]["counts"].get("PRUNED", 0) == 3
    done = [e for e in events(ev) if e["event"] == "done"]
    assert done[-1]["mean_dice"] == pytest.approx(metrics["mean_dice"])
    report = (out / "search" / "report.html").read_text()
    assert "data:image/png;base64" in report and len(report) > 10_000


@pytest.mark.parametrize("args, env_extra, names", [
    ([], {"AUTOSEG_DEMO_DATA": "/nowhere/at/all"}, "AUTOSEG_DEMO_DATA"),
    (["--trials", "0"], {}, "--trials"),
    (["--final-epochs", "0"], {}, "--final-epochs"),
    (["--final-time", "0"], {}, "--final-time"),
    (["--final-time", "soon"], {}, "soon"),
    (["--jobs", "0"], {}, "--jobs"),
])
def test_bad_demo_input_is_a_one_line_error_and_writes_nothing(tmp_path, args, env_extra, names):
    r = autoseg("demo", "--out", tmp_path / "demo", *args, env_extra=env_extra, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and names in r.stderr
    assert not (tmp_path / "demo").exists()
