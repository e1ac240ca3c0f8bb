"""Files someone else wrote cannot run code here: a model folder (``best/``) or training checkpoint whose pickle
carries a ``__reduce__`` payload, and an RL controller state planted in a shared study.  Each payload is first
shown to be live (unpickled the unsafe way it creates its marker file), then fed to every loader: the marker
never appears and the user gets one line (exit 2 from the CLI)."""
from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from shared_data import REPO, copy_msd_subset
from trainkit import tiny_config

DEMO = REPO / "Resources" / "DemoData" / "Hippocampus"


class _Payload:
    """Unpickling this runs ``touch MARKER`` (what a hostile file would do with a worse command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The same payload in every form torch.load reads: zip (torch.save), legacy torch.save, raw pickles."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"zip": folder / "zip.pt", "legacy": folder / "legacy.pt", "raw": folder / "raw.pt",
             "protocol0": folder / "protocol0.pt"}
    torch.save({"model": _Payload(marker)}, files["zip"])
    torch.save({"model": _Payload(marker)}, files["legacy"], _use_new_zipfile_serialization=False)
    files["raw"].write_bytes(pickle.dumps({"w": _Payload(marker)}))
    files["protocol0"].write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    return files


def _assert_live(path: Path, marker: Path) -> None:
    """The payload is real: unsafe loading runs it (then the marker is removed again)."""
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from AutoSegCore.training.api import train_model

    root = tmp_path_factory.mktemp("model")
    data = copy_msd_subset(root / "data", 3, source=DEMO)
    out = root / "M"
    train_model(data, tiny_config(epochs=1, steps_per_epoch=2), out, val_fraction=0, device="cpu")
    return out


def test_crafted_checkpoints_do_not_run_in_any_loader(model, tmp_path):
    from AutoSegCore.errors import ConfigError
    from AutoSegCore.inference.predictor import Predictor
    from AutoSegCore.training.model_io import load_model, read_checkpoint, read_weights

    marker = tmp_path / "pwned"
    files = _crafted_files(tmp_path / "files", marker)
    _assert_live(files["zip"], marker)
    # torch names the refused global (os.system) for its own formats; a raw protocol-4 pickle already stops at
    # an opcode its safe unpickler does not read (the file is then "not a weights file")
    refused = "holds Python objects|is not a PyTorch weights file|is not a readable checkpoint"
    for form, path in files.items():
        for load in (read_weights, lambda p: read_checkpoint(p, "any")):
            with pytest.raises(ConfigError, match="holds Python objects" if form != "raw" else refused) as err:
                load(path)
            assert str(path) in err.value.message and "\n" not in err.value.message, form
        folder = tmp_path / f"best-{form}"
        folder.mkdir()
        shutil.copyfile(model / "model.json", folder / "model.json")
        shutil.copyfile(path, folder / "model.pt")
        for load in (load_model, Predictor):
            with pytest.raises(ConfigError, match=refused):
                load(folder)
    assert not marker.exists()


def test_autoseg_predict_on_a_crafted_best_folder_and_ensemble_member(model, tmp_path, capsys):
    """`autoseg predict` as a user runs it (a real process) on best/, and in-process on an ensemble."""
    from AutoSegCore.cli import main

    marker = tmp_path / "pwned"
    files = _crafted_files(tmp_path / "files", marker)
    best = tmp_path / "best"
    best.mkdir()
    shutil.copyfile(model / "model.json", best / "model.json")
    shutil.copyfile(files["legacy"], best / "model.pt")
    ensemble = tmp_path / "ensemble"                   # a good member first, the crafted one second
    shutil.copytree(model, ensemble / "members" / "0")
    shutil.copytree(best, ensemble / "members" / "1")
    info = json.loads((model / "model.json").read_text())
    (ensemble / "ensemble.json").write_text(json.dumps({"members": ["members/0", "members/1"],
                                                        "labels": info["labels"]}))
    image = DEMO / "imagesTr" / "hippocampus_003.nii.gz"
    for folder in (best, ensemble):
        args = ["predict", str(folder), str(image), "--out", str(tmp_path / f"pred-{folder.name}")]
        if folder is best:
            r = subprocess.run([sys.executable, "-m", "AutoSegCore", *args], capture_output=True, text=True,
                               timeout=300)
        else:
            capsys.readouterr()
            r = subprocess.CompletedProcess(args, main(args), "", capsys.readouterr().err)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and "holds Python objects" in r.stderr, r.stderr
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) <= 2 and "error:" in lines[0] and "hint:" in lines[-1], r.stderr     # one error, one hint
        assert not any((tmp_path / f"pred-{folder.name}").glob("*.nrrd"))
    assert not marker.exists()


def test_training_does_not_resume_from_a_crafted_checkpoint(tmp_path):
    from AutoSegCore.errors import ConfigError
    from AutoSegCore.training.api import train_model

    marker = tmp_path / "pwned"
    files = _crafted_files(tmp_path / "files", marker)
    data = copy_msd_subset(tmp_path / "data", 3, source=DEMO)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(files["zip"], out / "checkpoint.pt")
    with pytest.raises(ConfigError, match="holds Python objects, not only a checkpoint") as err:
        train_model(data, tiny_config(epochs=1, steps_per_epoch=1), out, val_fraction=0, device="cpu")
    assert "--no-resume" in err.value.hint
    assert not marker.exists() and not (out / "model.pt").exists()


# ------------------------------------------------------------------------------------------------ RL state
def _objective(t):
    return t.suggest_int("k", 0, 4) + (t.suggest_categorical("c", ["p", "q"]) == "q")


def _rl_study(tmp_path):
    from AutoSegCore.strategies import make_sampler

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="rl", sampler=make_sampler("rl", seed=0, hidden=8))
    study.optimize(_objective, n_trials=4)
    return url, study


def test_rl_state_is_plain_json_arrays(tmp_path):
    from AutoSegCore.strategies.rl import STATE_ATTR, STATE_FORMAT

    _, study = _rl_study(tmp_path)
    state = study._storage.get_study_system_attrs(study._study_id)[STATE_ATTR]
    assert state["format"] == STATE_FORMAT and "weights" not in state
    assert json.loads(json.dumps(state)) == state
    for record in [*state["model"].values(), *(v for e in state["adam"] if e for v in e.values())]:
        assert set(record) == {"shape", "dtype", "data"} and record["dtype"] == "float32"
        assert all(isinstance(v, (int, float)) for v in record["data"])
    assert "torch.load" not in Path(sys.modules["AutoSegCore.strategies.rl"].__file__).read_text()


def test_crafted_rl_state_in_a_shared_study_does_not_run(tmp_path, caplog):
    from AutoSegCore.strategies import make_sampler
    from AutoSegCore.strategies.rl import STATE_ATTR

    url, study = _rl_study(tmp_path)
    state = study._storage.get_study_system_attrs(study._study_id)[STATE_ATTR]
    marker = tmp_path / "pwned"
    payload = _crafted_files(tmp_path / "files", marker)["zip"].read_bytes()
    _assert_live(tmp_path / "files" / "zip.pt", marker)
    # what an earlier version stored (torch.save → base64), now carrying the payload, as a newer version
    planted = {"signature": state["signature"], "weights": base64.b64encode(payload).decode(), "version": 99,
               "baseline": 0.0, "var": 1.0, "updates": 99}
    study._storage.set_study_system_attr(study._study_id, STATE_ATTR, planted)
    worker = optuna.load_study(study_name="rl", storage=url, sampler=make_sampler("rl", seed=1, hidden=8))
    with caplog.at_level("WARNING", logger="AutoSegCore.strategies.rl"):
        worker.optimize(_objective, n_trials=2)
    assert not marker.exists()
    assert "shared state (version 99) is ignored" in caplog.text and "pickled state is never loaded" in caplog.text
    assert all(t.state.name == "COMPLETE" for t in worker.trials)
    after = worker._storage.get_study_system_attrs(worker._study_id)[STATE_ATTR]
    assert "weights" not in after and after["version"] > 0          # the pickle is gone from the study

    # the new format with arrays that do not fit (a huge shape, a string, NaN) is refused before allocating
    bad = json.loads(json.dumps(after))
    name = next(iter(bad["model"]))
    bad["model"][name] = {"shape": [2**40], "dtype": "float32", "data": []}
    bad["version"] = 1000
    for entry in (e for e in bad["adam"] if e):
        entry["exp_avg"]["data"][0] = float("nan")
    study._storage.set_study_system_attr(study._study_id, STATE_ATTR, bad)
    caplog.clear()
    fresh = optuna.load_study(study_name="rl", storage=url, sampler=make_sampler("rl", seed=2, hidden=8))
    with caplog.at_level("WARNING", logger="AutoSegCore.strategies.rl"):
        fresh.optimize(_objective, n_trials=1)
    assert "version 1000) is ignored" in caplog.text and name in caplog.text
    assert fresh._storage.get_study_system_attrs(fresh._study_id)[STATE_ATTR]["version"] != 1000
