"""`python -m AutoSegCore proxy ...` end to end on a 20-case Hippocampus subset."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOSEG_THREADS": "1"}


def autoseg(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "AutoSegCore", "proxy", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_writes_proxy_json_and_preview(hippo20, tmp_path):
    out = tmp_path / "out"
    res = autoseg(hippo20, "--method", "mi", "--roi", "label", "--budget", "6", "--out", out, "--preview",
                  "--cache-dir", tmp_path / "cache", "--events", "-")
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert "progress" in kinds and kinds[-1] == "done"
    data = json.loads((out / "proxy.json").read_text())
    selected = [c for c in data["cases"] if c["selected"]]
    assert len(selected) == 6 and sorted(c["rank"] for c in selected) == [1, 2, 3, 4, 5, 6]
    assert sorted(data["train"] + data["val"]) == sorted(data["selected"]) and len(data["val"]) == 3
    import matplotlib.image as mpimg
    png = mpimg.imread(out / "proxy_preview.png")
    assert png.shape[0] > 100 and png.shape[1] > 300
    rgb = png[..., :3]
    assert rgb.std() > 0.05                                          # not blank
    coloured = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    assert (coloured > 0.2).mean() > 0.001                           # the label overlay is there


@pytest.mark.parametrize("budget,match", [("1", "at least 2"), ("21", "only 20"),
                                          ("many", "not a number")])
def test_cli_bad_budget_exits_2_without_output(hippo20, tmp_path, budget, match):
    out = tmp_path / "out"
    res = autoseg(hippo20, "--method", "ncc", "--budget", budget, "--out", out, "--preview",
                  "--cache-dir", tmp_path / "cache")
    assert res.returncode == 2
    assert match in res.stderr and "hint:" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_cli_missing_dataset_exits_2(tmp_path):
    res = autoseg(tmp_path / "nope", "--out", tmp_path / "out")
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
