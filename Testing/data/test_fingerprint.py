"""Fingerprints of the real datasets: geometry, intensities, label volumes, JSON round trip."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from shared_data import ALL_DATASETS, HIPPO, SPLEEN

from AutoSegCore.data.dataset import load_dataset
from AutoSegCore.data.fingerprint import compute_fingerprint, load_fingerprint, save_fingerprint


@pytest.mark.parametrize("root", ALL_DATASETS, ids=lambda p: p.name)
def test_fingerprint_every_shared_dataset(root):
    ds = load_dataset(root)
    fp = compute_fingerprint(ds)
    assert json.loads(json.dumps(fp)) == fp                    # plain JSON types only
    assert fp["num_cases"] == len(ds.cases) == len(fp["cases"])
    assert len(fp["intensity"]) == ds.num_channels
    for ch in fp["intensity"]:
        assert ch["p0.5"] <= ch["p50"] <= ch["p99.5"] and ch["std"] >= 0
    case = ds.cases[0]
    img, lbl = nib.load(case.images[0]), np.asarray(nib.load(case.label).dataobj)
    entry = fp["cases"][0]
    assert entry["shape"] == list(img.shape[:3])
    assert entry["spacing"] == pytest.approx([float(z) for z in img.header.get_zooms()[:3]], rel=1e-5)
    counts = np.bincount(np.rint(lbl).astype(np.int64).ravel())
    assert entry["label_voxels"] == {str(v): int(counts[v]) for v in range(1, len(counts)) if counts[v]}


def test_hippocampus_fingerprint():
    fp = compute_fingerprint(load_dataset(HIPPO))
    assert fp["spacing"]["median"] == [1.0, 1.0, 1.0] and not fp["anisotropic"]
    assert fp["shape"]["min"] == [31, 40, 24] and fp["shape"]["max"] == [43, 59, 47]   # as the data README says
    assert fp["label_stats"]["1"]["cases_present"] == 182 and fp["label_stats"]["2"]["name"] == "Posterior"


def test_spleen_is_anisotropic_and_volumes_in_mm3():
    fp = compute_fingerprint(load_dataset(SPLEEN))
    assert fp["anisotropic"] and fp["anisotropy_ratio"] == pytest.approx(5.0 / 0.794922, rel=1e-4)
    voxels = fp["cases"][0]["label_voxels"]["1"]
    assert fp["label_stats"]["1"]["mm3_mean"] == pytest.approx(voxels * 0.794922 ** 2 * 5.0, rel=1e-4)
    assert 100_000 < fp["label_stats"]["1"]["mm3_mean"] < 1_000_000    # a spleen is ~0.1–0.5 litre


def test_deterministic(hippo):
    ds = hippo.subset(hippo.case_names[:20])
    assert compute_fingerprint(ds) == compute_fingerprint(ds)


def test_save_and_load(tmp_path):
    fp = compute_fingerprint(load_dataset(SPLEEN))
    path = save_fingerprint(fp, tmp_path / "sub" / "fp.json")
    assert load_fingerprint(path) == fp
    assert [p.name for p in path.parent.iterdir()] == ["fp.json"]       # no temp files left


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_unusable_out_path_is_refused_before_the_work_and_named(tmp_path, capsys, where):
    """The error names the user's path (not our hidden temp file) and comes before the statistics are computed."""
    from AutoSegCore.cli import main

    blocker = tmp_path / "taken"
    if where == "a folder":
        blocker.mkdir()
        out, named = blocker, blocker
    else:
        blocker.write_text("keep me\n")
        out, named = blocker / "sub" / "fp.json", blocker
    events = tmp_path / "events.jsonl"
    code = main(["fingerprint", str(HIPPO), "--out", str(out), "--events", str(events)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {named}: " in err and ".json." not in err, err
    assert "Traceback" not in err and "case(s)" not in err          # no summary table: nothing was computed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "taken"]
    assert blocker.is_dir() or blocker.read_text() == "keep me\n"
