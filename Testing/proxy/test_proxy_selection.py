"""Selection: ranking, budget, seeded random baseline, split, cache and proxy.json on real Hippocampus cases."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import EventWriter
from AutoSegCore.proxy import (load_proxy, pairwise_matrix, resolve_budget, save_proxy, select_proxy_data,
                               split_train_val)
from AutoSegCore.proxy.selection import case_scores

from shared_data import make_subset


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("proxy-cache")


@pytest.mark.parametrize("method", ["mi", "ncc"])
def test_selection_picks_lowest_mean_scores_and_is_deterministic(method, hippo20, cache):
    first = select_proxy_data(hippo20, method=method, roi="label", budget=6, cache_dir=cache)
    matrix, hit = pairwise_matrix(hippo20, method, roi="label", cache_dir=cache)
    assert hit and not first.cache_hit
    scores = case_scores(matrix)
    lowest = [first.cases[k] for k in np.argsort(scores, kind="stable")[:6]]
    assert first.selected == lowest
    assert [first.ranks[n] for n in first.selected] == [1, 2, 3, 4, 5, 6]
    assert all(first.scores[n] <= first.scores[m] for n in first.selected for m in first.cases if m not in first.selected)
    again = select_proxy_data(hippo20, method=method, roi="label", budget=6, cache_dir=cache)
    assert again.cache_hit and again.selected == first.selected and again.scores == first.scores
    assert again.train == first.train and again.val == first.val
    assert sorted(first.train + first.val) == sorted(first.selected) and not set(first.train) & set(first.val)
    assert len(first.val) == 3


def test_scores_exclude_self_pair_unless_asked(hippo20, cache):
    matrix, _ = pairwise_matrix(hippo20, "mi", roi="label", cache_dir=cache)
    sel = select_proxy_data(hippo20, method="mi", budget=4, cache_dir=cache)
    lit = select_proxy_data(hippo20, method="mi", budget=4, cache_dir=cache, include_self=True)
    name = sel.cases[0]
    assert sel.scores[name] == pytest.approx((matrix[0].sum() - matrix[0, 0]) / 19)
    assert lit.scores[name] == pytest.approx(matrix[0].mean())


def test_fraction_budget_and_val_fraction(hippo20, cache):
    sel = select_proxy_data(hippo20, method="ncc", budget=0.25, val_fraction=0.4, seed=3, cache_dir=cache)
    assert sel.budget == 5 and sel.budget_spec == 0.25
    assert len(sel.val) == 2 and len(sel.train) == 3


def test_random_baseline_is_seeded(hippo20):
    a = select_proxy_data(hippo20, method="random", budget=8, seed=7)
    b = select_proxy_data(hippo20, method="random", budget=8, seed=7)
    c = select_proxy_data(hippo20, method="random", budget=8, seed=8)
    assert a.selected == b.selected and a.train == b.train and a.val == b.val
    assert a.selected != c.selected
    assert len(set(a.selected)) == 8 and set(a.selected) <= set(a.cases)
    assert all(v is None for v in a.scores.values())


@pytest.mark.parametrize("budget", [1, 0, 21, 0.04, 1.5, -3, "abc", "0"])
def test_bad_budget_is_a_config_error(budget):
    with pytest.raises(ConfigError) as info:
        resolve_budget(budget, 20)
    assert info.value.hint


def test_bad_budget_fails_before_any_work(hippo20, tmp_path):
    with pytest.raises(ConfigError, match="only 20"):
        select_proxy_data(hippo20, method="mi", budget=25, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="val_fraction"):
        select_proxy_data(hippo20, method="mi", budget=5, val_fraction=1.0, cache_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="method"):
        select_proxy_data(hippo20, method="entropy", budget=5)


def test_split_is_seeded_and_complete():
    names = [f"c{k}" for k in range(10)]
    tr, va = split_train_val(names, 0.5, seed=1)
    assert split_train_val(names, 0.5, seed=1) == (tr, va)
    assert sorted(tr + va) == names and len(va) == 5
    assert split_train_val(names[:2], 0.9, seed=0)[0] != []      # both parts keep a case


def test_case_without_foreground_under_roi_label(tmp_path):
    """A label with no foreground stops roi='label' with the case's name; roi='none' still works."""
    import nibabel as nib
    root = make_subset(tmp_path / "ds", 4)
    meta = json.loads((root / "dataset.json").read_text())
    src = meta["training"][2]["label"]
    img = nib.load(root / src)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, dtype=np.uint8), img.affine), root / "labelsTr" / "empty.nii.gz")
    meta["training"][2]["label"] = "./labelsTr/empty.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="no foreground") as info:
        select_proxy_data(root, method="ncc", roi="label", budget=2, cache_dir=tmp_path / "c")
    assert "hippocampus" in info.value.message and "--roi none" in info.value.hint
    sel = select_proxy_data(root, method="ncc", roi="none", budget=2, cache_dir=tmp_path / "c")
    assert all(np.isfinite(v) for v in sel.scores.values())


def test_cache_follows_content_not_path(hippo20, cache, tmp_path):
    select_proxy_data(hippo20, method="mi", budget=4, cache_dir=cache)     # filled here, whatever ran before
    copy = tmp_path / "copy"
    shutil.copytree(hippo20, copy)
    sel = select_proxy_data(copy, method="mi", budget=4, cache_dir=cache)
    assert sel.cache_hit          # same files → same content hash
    other = select_proxy_data(hippo20, method="mi", roi="none", budget=4, cache_dir=cache)
    assert not other.cache_hit    # other parameters → another matrix


def test_proxy_json_roundtrip_and_progress_events(hippo20, tmp_path):
    seen = []
    events = EventWriter(None)
    events.listeners.append(seen.append)
    sel = select_proxy_data(hippo20, method="mi", budget=5, cache_dir=tmp_path / "c", events=events)
    progress = [e for e in seen if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 190
    path = save_proxy(sel, tmp_path / "out")
    data = json.loads(path.read_text())
    assert data["method"] == "mi" and data["roi"] == "label" and data["budget"] == 5
    assert [c["name"] for c in data["cases"] if c["selected"]] == sorted(sel.selected) or \
        {c["name"] for c in data["cases"] if c["selected"]} == set(sel.selected)
    assert sorted(c["rank"] for c in data["cases"]) == list(range(1, 21))
    back = load_proxy(path)
    assert back == sel
    assert [p.name for p in path.parent.iterdir()] == ["proxy.json"]     # no temp files left behind


def test_multichannel_real_dataset_uses_mean_over_channels(tmp_path):
    """BRATS (FLAIR + T1c): the case score comes from the mean of the per-channel measures."""
    from shared_data import DATA_ROOT
    from AutoSegCore.proxy import load_volumes, pairwise_ncc
    from AutoSegCore.data.dataset import load_dataset
    root = DATA_ROOT / "BRATS2015_DeepMedicExamples"
    if not root.is_dir():
        pytest.skip("BRATS example data not found")
    ds = load_dataset(root, deep=False)
    sel = select_proxy_data(ds, method="ncc", roi="label", budget=2, size=24, cache_dir=tmp_path)
    vols = load_volumes(ds, roi="label", size=24)
    assert vols.shape == (4, 2, 24, 24, 24)
    per_channel = [pairwise_ncc(vols[:, c:c + 1]) for c in range(2)]
    expected = case_scores((per_channel[0] + per_channel[1]) / 2)
    assert [sel.scores[n] for n in sel.cases] == pytest.approx(list(expected), abs=1e-6)
    assert len(sel.selected) == 2 and sel.selected == [n for n, _ in sorted(sel.scores.items(), key=lambda kv: kv[1])][:2]


def test_load_volumes_memory_mapped_equals_in_ram(hippo20, monkeypatch):
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.proxy import load_volumes, similarity
    ds = load_dataset(hippo20, deep=False).subset([f"hippocampus_{k:03d}" for k in (3, 7, 8)])
    in_ram = load_volumes(ds, roi="label", size=32)
    monkeypatch.setattr(similarity, "IN_MEMORY_LIMIT", 0)
    mapped = load_volumes(ds, roi="label", size=32)
    assert torch.equal(in_ram, mapped) and mapped.shape == (3, 1, 32, 32, 32)
