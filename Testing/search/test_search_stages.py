"""Stage outputs: a search reads its training cases' voxels for the fingerprint once, in the parent, and every
trial fits its preprocessing from ``fingerprint.json`` / ``preprocessing/*.json`` without reading a case."""
from __future__ import annotations

import json

import pytest

from AutoSegCore.data.dataset import load_dataset
from AutoSegCore.data.fingerprint import compute_fingerprint
from AutoSegCore.data.volumes import IO_STATS
from AutoSegCore.search.runner import SearchRunner
from AutoSegCore.search.settings import SearchSettings

pytestmark = pytest.mark.slow


def test_twenty_trials_read_each_training_case_once_for_the_fingerprint(dataset, tmp_path):
    out = tmp_path / "run"
    settings = SearchSettings(data=str(dataset), out=str(out), space="proxy-hpo", strategy="random",
                              proxy_net="levels=3", trials=20, epochs=1, min_epochs=1, steps_per_epoch=1,
                              final=False)
    reads = IO_STATS["data_reads"]
    load_dataset(dataset)                                   # what opening the dataset reads (its checks)
    opening = IO_STATS["data_reads"] - reads
    runner = SearchRunner(settings)
    reads = IO_STATS["data_reads"]
    runner.prepare()
    prepare_reads = IO_STATS["data_reads"] - reads
    summary = runner.run_trials()
    assert summary["counts"]["COMPLETE"] + summary["counts"]["PRUNED"] == 20, summary["counts"]
    train = runner.prepared.train_cases
    reads = IO_STATS["data_reads"]
    compute_fingerprint(load_dataset(dataset, validate=False).subset(train))
    one_fingerprint = IO_STATS["data_reads"] - reads
    assert one_fingerprint >= len(train) >= 2
    # the parent: opening the dataset + one fingerprint of the training cases, written as a stage output
    assert prepare_reads == opening + one_fingerprint
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert [c["name"] for c in fingerprint["cases"]] == train
    # each trial (its own process) fitted its preprocessing from the stage outputs: no voxel read for it
    specs = [json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/spec.json"))]
    results = [json.loads(p.read_text()) for p in sorted((out / "trials").glob("*/result.json"))]
    assert len(specs) == len(results) == 20
    assert all(s["fingerprint"] == str(out.resolve() / "fingerprint.json") for s in specs)
    assert all(s["preprocessor"] and s["preprocessor"].startswith(str(out.resolve() / "preprocessing")) for s in specs)
    assert [r["preprocessing_fit_reads"] for r in results] == [0] * 20
