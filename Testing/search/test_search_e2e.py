"""A real search end to end: proxy data + proxy net trials in child processes, final training, best/, report."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from searchkit import TINY, autoseg, events, load, make_subset

pytestmark = pytest.mark.slow


def test_proxy_search_to_best_model_and_report(dataset, tmp_path):
    out, ev = tmp_path / "run", tmp_path / "events.jsonl"
    base = tmp_path / "base.yaml"            # a base config's time limit is for single trainings, never a trial's
    base.write_text("training: {time_limit: 900}\n")
    r = autoseg("search", dataset, *TINY, "--proxy-data", "mi+roi:6", "--trials", "2", "--final-time", "4s",
                "--config", base, "--out", out, "--events", ev)
    assert r.returncode == 0, r.stderr[-3000:]
    kinds = [e["event"] for e in events(ev)]
    for k in ("study_started", "trial_started", "epoch", "trial_finished", "artifact", "done"):
        assert k in kinds, k
    assert kinds.count("trial_finished") == 2
    proxy_data = json.loads((out / "proxy.json").read_text())
    assert proxy_data["method"] == "mi" and len(proxy_data["selected"]) == 6
    search = json.loads((out / "search.json").read_text())
    assert sorted(search["train_cases"] + search["val_cases"]) == sorted(proxy_data["selected"])
    study = load(search["storage"], search["study_name"])
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for t in done:
        assert t.user_attrs["config"]["network"]["depth"] == 3          # proxy net, 3 levels
        assert t.user_attrs["config"]["network"]["channels"] == 4
        assert t.user_attrs["full_config"]["network"]["channels"] > 4   # the final model uses the full net
        assert sorted(t.intermediate_values) == [1, 2]
        assert t.user_attrs["config"]["training"]["time_limit"] is None
    final = json.loads((out / "final" / "final.json").read_text())
    assert final["members"][0]["trial"] == study.best_trial.number
    best_info = json.loads((out / "best" / "model.json").read_text())
    # --final-time: the final training ran for its wall-clock share with its lr schedule re-fitted to it
    assert best_info["config"]["training"]["time_limit"] == 4.0
    history = json.loads((out / "best" / "history.json").read_text())
    assert all("horizon" in r for r in history) and history[-1]["epoch"] == best_info["epochs"]
    assert sum(r["seconds"] for r in history) < 4.0 + 2 * max(r["seconds"] for r in history) + 1.0
    # flip TTA decided from validation (--final-tta auto): both ways scored, the better one kept in best/
    tried = final["tta_val_dice"]
    if best_info["flip_axes"]:
        assert set(tried) == {"on", "off"} and final["tta"] == (tried["on"] > tried["off"])
    else:
        assert tried.keys() == {"off"} and final["tta"] is False
    assert best_info["config"]["inference"]["tta"] == final["tta"]
    assert "flip test-time augmentation" in (out / "report.html").read_text()
    assert best_info["config"]["network"]["channels"] == study.best_trial.user_attrs["full_config"]["network"]["channels"]
    assert (out / "report.html").stat().st_size > 10_000 and (out / "summary.json").is_file()
    # the best model is directly usable by `autoseg predict`
    image = sorted((dataset / "imagesTr").glob("*.nii.gz"))[0]
    r = autoseg("predict", out / "best", image, "--out", tmp_path / "pred")
    assert r.returncode == 0, r.stderr[-2000:]
    pred = nib.load(str(tmp_path / "pred" / image.name))
    assert pred.shape == nib.load(str(image)).shape
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}


def test_rerun_resumes_and_adds_trials(dataset, tmp_path):
    out = tmp_path / "run"
    r = autoseg("search", dataset, *TINY, "--trials", "1", "--no-final", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    r = autoseg("search", dataset, *TINY, "--trials", "2", "--no-final", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    search = json.loads((out / "search.json").read_text())
    study = load(search["storage"], search["study_name"])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # the resumed run's sampler does not restart its random stream: no configuration is drawn twice
    assert study.trials[0].params != study.trials[1].params
    r = autoseg("search", dataset, "--space", "unet-pipeline", "--strategy", "random", "--trials", "2", "--out", out)
    assert r.returncode == 2 and "same --space" in r.stderr and "Traceback" not in r.stderr
    # another proxy rung would rank its values with the study's: refused, and nothing of the study changes
    before = (out / "search.json").read_bytes()
    r = autoseg("search", dataset, *TINY, "--proxy-net", "levels=4", "--proxy-data", "mi:6", "--trials", "3",
                "--no-final", "--out", out)
    assert r.returncode == 2 and "--proxy-net levels=3" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (out / "search.json").read_bytes() == before and not (out / "proxy.json").exists()
    study = load(search["storage"], search["study_name"])
    assert len(study.trials) == 2 and study.user_attrs["proxy_net"] == "levels=3"
    # so would another trial budget
    r = autoseg("search", dataset, *TINY, "--epochs", "3", "--trials", "3", "--no-final", "--out", out)
    assert r.returncode == 2 and "--epochs 2 → 3" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (out / "search.json").read_bytes() == before
    assert len(load(search["storage"], search["study_name"]).trials) == 2
    # … and another base config (trial values depend on it), or a dataset without the study's cases
    base = tmp_path / "base.yaml"
    base.write_text("network: {conv: 2d}\n")
    r = autoseg("search", dataset, *TINY, "--config", base, "--trials", "3", "--no-final", "--out", out)
    assert r.returncode == 2 and "--config: a different base config" in r.stderr, r.stderr
    fewer = make_subset(tmp_path / "fewer", 4)
    r = autoseg("search", fewer, *TINY, "--trials", "3", "--no-final", "--out", out)
    assert r.returncode == 2 and "lacks" in r.stderr and str(dataset) in r.stderr and "Traceback" not in r.stderr
    assert (out / "search.json").read_bytes() == before
    # the same cases at another path (a moved dataset) resume on the study's own split
    moved = make_subset(tmp_path / "moved", 10)
    r = autoseg("search", moved, *TINY, "--trials", "3", "--no-final", "--out", out)
    assert r.returncode == 0 and f"resuming on {moved} (the study started on {dataset})" in r.stderr, r.stderr[-3000:]
    after = json.loads((out / "search.json").read_text())
    assert (after["train_cases"], after["val_cases"]) == (search["train_cases"], search["val_cases"])
    assert len(load(search["storage"], search["study_name"]).trials) == 3
