"""A received dataset or ensemble folder cannot make the engine read files outside it (issue 30, item 6)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from datakit import make_msd_copy

from AutoSegCore.data.dataset import load_dataset, read_case
from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.inference.predictor import Predictor


def _rewrite_first_entry(root, key, value):
    dj = root / "dataset.json"
    meta = json.loads(dj.read_text())
    meta["training"][0][key] = value
    dj.write_text(json.dumps(meta))
    return dj


@pytest.mark.parametrize("key", ["image", "label"])
@pytest.mark.parametrize("escape", ["../outside.nii.gz", "./imagesTr/../../outside.nii.gz", "/etc/hostname",
                                    "C:\\Windows\\win.ini"])
def test_dataset_json_entry_leaving_the_folder_is_refused(tmp_path, key, escape):
    root = make_msd_copy(tmp_path / "ds", n=2)
    # a real image just outside the folder: the attack would succeed if the path were joined unchecked
    shutil.copy(load_dataset(root).cases[1].images[0], tmp_path / "outside.nii.gz")
    dj = _rewrite_first_entry(root, key, escape)
    with pytest.raises(DatasetError) as err:
        load_dataset(root, validate=False)
    assert str(dj) in str(err.value) and escape in str(err.value)
    assert "relative" in err.value.hint


def test_entries_inside_the_folder_and_symlinks_made_there_still_load(tmp_path):
    root = make_msd_copy(tmp_path / "ds", n=2)
    # data kept elsewhere and linked into the dataset folder by its owner: followed, as nnU-Net users expect
    elsewhere = tmp_path / "disk2"
    shutil.move(root / "imagesTr", elsewhere)
    (root / "imagesTr").symlink_to(elsewhere, target_is_directory=True)
    _rewrite_first_entry(root, "label", "labelsTr/../labelsTr/" + load_dataset(root).cases[0].label.name)
    ds = load_dataset(root)
    assert read_case(ds.cases[0]).image.size > 0
    assert ds.cases[0].images[0].parent == root / "imagesTr"


def test_cli_refuses_the_escape_with_one_line(tmp_path):
    root = make_msd_copy(tmp_path / "ds", n=2)
    _rewrite_first_entry(root, "image", "../../../../etc/hostname")
    run = subprocess.run([sys.executable, "-m", "AutoSegCore", "validate", str(root), "--shallow"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "leads outside" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("member", ["../victim", "/tmp", "members/../../victim"])
def test_ensemble_member_outside_the_folder_is_refused(tmp_path, member):
    ens = tmp_path / "ens"
    ens.mkdir()
    (tmp_path / "victim").mkdir()
    (ens / "ensemble.json").write_text(json.dumps({"members": [member], "labels": {"0": "bg", "1": "x"}}))
    with pytest.raises(ConfigError) as err:
        Predictor(ens, device="cpu")
    assert "ensemble.json" in str(err.value) and member in str(err.value)
