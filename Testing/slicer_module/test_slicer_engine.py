"""The real engine as a child process driven through the Logic: events stream in, masks come back, cancel kills.

These run `python -m AutoSegCore ...` for real on real data (tiny networks, a couple of optimisation steps).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from AutoSegCore.errors import DatasetError
from AutoSegSearchLib.logic import CasePair
from AutoSegSearchLib.process import EngineProcess, ProcessState
from AutoSegSearchLib.progress import RunProgress
from AutoSegSearchLib.run_parameters import SearchParameters
from slicer_testkit import (HIPPO, file_labels_kji, labels_on_volume_grid, load_pair, node_ids, put_in_study,
                            segments_of)

CASES = ["hippocampus_003", "hippocampus_007", "hippocampus_008", "hippocampus_011"]
TINY = "network: {depth: 2, channels: 4}\ntraining: {epochs: 1, steps_per_epoch: 2, batch_size: 2}\n"
CPU = {"AUTOSEG_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@functools.lru_cache(maxsize=None)
def engine_has(command: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "AutoSegCore", "--help"], capture_output=True, text=True).stdout
    return f" {command} " in out or f"\n    {command}" in out


def export_cases(logic, out_dir):
    table = logic.scene.AddNewNodeByClass("vtkMRMLColorTableNode", "HippoNames")
    table.SetTypeToUser()
    table.SetNumberOfColors(3)
    table.SetColor(0, "background", 0, 0, 0, 0)
    table.SetColor(1, "Anterior", 1, 0.5, 0, 1)
    table.SetColor(2, "Posterior", 0, 0.5, 1, 1)
    pairs = []
    for case in CASES:
        volume, label = load_pair(logic, HIPPO, case)
        label.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
        pairs.append(CasePair(volume, label))
    return logic.exporter.export_dataset(pairs, out_dir, name="Hippo", modality="MRI"), pairs


@pytest.mark.slow
@pytest.mark.skipif(not engine_has("train") or not engine_has("predict"),
                    reason="engine has no 'train'/'predict' command yet")
def test_train_then_apply_through_the_logic(logic, tmp_path):
    dataset, pairs = export_cases(logic, tmp_path / "dataset")
    (tmp_path / "tiny.yaml").write_text(TINY)
    received = []
    proc = logic.engine.start_engine(logic.engine.train_args(dataset.path, tmp_path / "model", config=tmp_path / "tiny.yaml",
                                               device="cpu"),
                              tmp_path / "work", on_event=received.append, env=CPU)
    assert proc.state == ProcessState.RUNNING and psutil.pid_exists(proc.pid)
    polls = 0
    while proc.running:                       # what the GUI timer does: poll, never block
        proc.poll()
        polls += 1
        time.sleep(0.1)
    assert proc.state == ProcessState.SUCCEEDED, proc.failure_message()
    kinds = [e["event"] for e in received]
    assert kinds[0] == "study_started" and kinds[-1] == "done"
    assert kinds.count("epoch") == 1 and "artifact" in kinds
    assert all("time" in e for e in received) and polls > 1
    # the Run panel's view of the same stream
    progress = RunProgress()
    for event in received:
        progress.update(event)
    assert progress.fraction == 1.0 and progress.status == "finished" and progress.error is None
    assert progress.artifacts["model"] == str(tmp_path / "model")

    # Apply: the model on a volume already in the scene (inside a study), masks back as segments
    volume = pairs[0].volume
    sh, study = put_in_study(logic.scene, volume)
    n_before = logic.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    seen = []
    seg_node = logic.importer.apply_model(tmp_path / "model", volume, tmp_path / "apply", device="cpu",
                                 on_event=seen.append, timeout=120)
    assert {"study_started", "artifact", "done"} <= {e["event"] for e in seen}
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == n_before + 1
    names = segments_of(seg_node)
    assert set(names) <= {"Anterior", "Posterior"} and all(names[n] == {"Anterior": 1, "Posterior": 2}[n]
                                                           for n in names)
    assert sh.GetItemParent(sh.GetItemByDataNode(seg_node)) == study
    predicted = file_labels_kji(tmp_path / "apply" / "predictions" / "hippocampus_003.nii.gz")
    assert predicted.shape == tuple(reversed(volume.GetImageData().GetDimensions()))
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume), predicted)


@pytest.mark.slow
@pytest.mark.skipif(not engine_has("train"), reason="engine has no 'train' command yet")
def test_cancel_kills_the_process_tree_and_leaves_the_scene(logic, tmp_path):
    dataset, _ = export_cases(logic, tmp_path / "dataset")
    before = node_ids(logic.scene)
    finished = []
    proc = logic.engine.start_engine(logic.engine.train_args(dataset.path, tmp_path / "model", epochs=10000, device="cpu"),
                              tmp_path / "work", on_finished=finished.append, env=CPU)
    deadline = time.monotonic() + 60
    while not proc.events_of("study_started") and time.monotonic() < deadline and proc.running:
        proc.poll()
        time.sleep(0.1)
    assert proc.running, proc.failure_message()
    tree = proc.process_tree()
    pids = [p.pid for p in tree]
    assert proc.pid in pids

    killed = proc.cancel(timeout=10)

    assert set(pids) <= set(killed)
    for p in tree:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, f"pid {p.pid} survived cancel"
    assert proc.state == ProcessState.CANCELLED and finished == [proc]
    assert node_ids(logic.scene) == before
    assert not (tmp_path / "model" / "model.pt").exists()


def test_cancel_kills_grandchildren_too(tmp_path):
    """The Slicer launcher pattern: the direct child only starts the real worker. Both must die."""
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)")
    proc = EngineProcess([], tmp_path / "ev.jsonl", python=sys.executable)
    proc.command = [sys.executable, "-c", script]
    proc.start()
    deadline = time.monotonic() + 20
    while len(proc.process_tree()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = proc.process_tree()
    assert len(tree) == 2
    proc.cancel(timeout=5)
    for p in tree:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
@pytest.mark.skipif(not engine_has("predict"), reason="engine has no 'predict' command yet")
def test_engine_error_reaches_the_caller_with_its_hint(logic, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pt").write_bytes(b"not a model")
    image = HIPPO / "imagesTr" / "hippocampus_003.nii.gz"
    with pytest.raises(DatasetError) as info:
        logic.engine.run_engine(logic.engine.predict_args(tmp_path / "model", [image], tmp_path / "out", device="cpu"),
                         tmp_path / "work", timeout=120, env=CPU)
    assert "predict" in info.value.message and info.value.hint


def test_model_folder_without_model_is_refused(logic, tmp_path):
    with pytest.raises(DatasetError, match="no trained model"):
        logic.engine.predict_args(tmp_path, ["x.nii.gz"], tmp_path / "out")


def _tiny_search_args(logic, tmp_path, dataset, final: bool):
    (tmp_path / "tiny.yaml").write_text(TINY)
    # proxy-hpo tunes optimiser / lr / augmentation over the base config, so the network stays tiny
    return SearchParameters(space="proxy-hpo", strategy="random", trials=1, epochs=1, steps_per_epoch=2, final=final,
                            final_time_minutes=0.1 if final else None, device="cpu").search_args(
        dataset.path, tmp_path / "search", extra=["--config", str(tmp_path / "tiny.yaml")])


@pytest.mark.slow
@pytest.mark.skipif(not engine_has("search"), reason="engine has no 'search' command yet")
def test_tiny_search_streams_events_and_its_best_model_applies(logic, tmp_path):
    dataset, pairs = export_cases(logic, tmp_path / "dataset")
    progress, changed_rows = RunProgress(), []
    proc = logic.engine.start_engine(_tiny_search_args(logic, tmp_path, dataset, final=True), tmp_path / "search",
                              on_event=lambda e: changed_rows.append(progress.update(e)), env=CPU)
    proc.wait(timeout=900)
    kinds = [e["event"] for e in proc.events]
    for kind in ("study_started", "trial_started", "epoch", "trial_finished", "progress"):
        assert kind in kinds, f"no {kind} event in {kinds}"
    assert kinds.index("trial_started") < kinds.index("epoch") < kinds.index("trial_finished")
    assert 0 in changed_rows
    (trial, params, value, state), = progress.rows()
    assert trial == "0" and "optimizer=" in params and state == "complete" and float(value) >= 0
    assert proc.state == ProcessState.SUCCEEDED, proc.failure_message()
    assert "done" in kinds
    best_value, best_params = logic.outputs.best_of(progress.done)
    assert best_value == pytest.approx(float(value), rel=1e-3) and "lr" in best_params
    # the panel's "Final training" minutes reach the engine as --final-time: 6 s of retraining
    best_info = json.loads((tmp_path / "search" / "best" / "model.json").read_text())
    assert best_info["config"]["training"]["time_limit"] == pytest.approx(6.0)

    volume = pairs[1].volume
    seg_node = logic.importer.apply_model(tmp_path / "search", volume, tmp_path / "apply", device="cpu", timeout=300)
    assert set(segments_of(seg_node)) <= {"Anterior", "Posterior"}
    predicted = file_labels_kji(tmp_path / "apply" / "predictions" / "hippocampus_007.nii.gz")
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume), predicted)


@pytest.mark.slow
@pytest.mark.skipif(not engine_has("proxy"), reason="engine has no 'proxy' command yet")
def test_proxy_selection_then_preview_of_the_chosen_case(logic, tmp_path):
    dataset, pairs = export_cases(logic, tmp_path / "dataset")
    progress = RunProgress()
    args = logic.engine.proxy_args(dataset.path, tmp_path / "proxy", method="mi", roi=True, budget=2, device="cpu",
                            cache_dir=tmp_path / "cache")
    proc = logic.engine.start_engine(args, tmp_path / "proxy", on_event=progress.update, env=CPU)
    assert proc.wait(timeout=300) == ProcessState.SUCCEEDED, proc.failure_message()
    assert progress.fraction == 1.0 and "proxy" in progress.artifacts

    result = logic.outputs.read_proxy_result(tmp_path / "proxy")
    assert sorted(c.name for c in result.cases) == sorted(CASES)
    assert [c.rank for c in result.cases] == [1, 2, 3, 4]
    assert len(result.selected) == 2 and {c.name for c in result.cases if c.selected} == set(result.selected)
    assert result.preview_png is not None and result.preview_png.stat().st_size > 0

    chosen = result.selected[0]
    n_volumes = logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    volume, seg_node = logic.importer.load_case(dataset.path, chosen)
    assert logic.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_volumes + 1
    assert segments_of(seg_node) == {"Anterior": 1, "Posterior": 2}
    original = next(p.volume for p in pairs if p.volume.GetName() == chosen)
    import slicer
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), slicer.util.arrayFromVolume(original))
    np.testing.assert_array_equal(labels_on_volume_grid(logic, seg_node, volume),
                                  file_labels_kji(HIPPO / "labelsTr" / f"{chosen}.nii.gz"))


@pytest.mark.slow
def test_cancel_stops_a_search_gracefully_so_a_rerun_resumes_it(logic, tmp_path):
    """Cancel first sends the engine Ctrl-C: its running trial is stopped at its last checkpoint and re-queued,
    the panel's status shows the engine's summary, and nothing survives."""
    import optuna

    dataset, _ = export_cases(logic, tmp_path / "dataset")
    out = tmp_path / "study"
    progress = RunProgress()
    proc = EngineProcess(["search", dataset.path, "--space", "proxy-hpo", "--strategy", "random", "--epochs", "400",
                          "--min-epochs", "1", "--steps-per-epoch", "2", "--proxy-net", "levels=3", "--trials", "3",
                          "--no-final", "--device", "cpu", "--out", out], tmp_path / "ev.jsonl",
                         on_event=progress.update, env=CPU)
    proc.start()
    deadline = time.monotonic() + 300
    while not any(e.get("trial") == 0 for e in proc.events_of("epoch")) and time.monotonic() < deadline:
        assert proc.running, proc.failure_message()
        proc.poll()
        time.sleep(0.2)
    tree = proc.process_tree()
    asked = time.monotonic()
    proc.request_cancel(timeout=10)
    # the GUI's call returns at once: the engine is still checkpointing its trial, the poll timer runs on
    assert time.monotonic() - asked < 0.5 and proc.running and proc.cancelling
    assert any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    while proc.running and time.monotonic() < asked + 60:
        proc.poll()
        time.sleep(0.1)
    for p in tree:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, f"pid {p.pid} survived cancel"
    assert proc.state == ProcessState.CANCELLED
    assert progress.status.startswith("interrupted: 1 stopped and re-queued"), progress.status
    assert progress.rows()[0][3] == "stopped, re-queued"
    search = json.loads((out / "search.json").read_text())
    study = optuna.load_study(study_name=search["study_name"], storage=search["storage"])
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["error"] == "interrupted by the user; re-queued"
