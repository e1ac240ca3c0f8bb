"""The Python API checks what the command line checks, before anything is written: scripting the engine must not
be the way to an endless search, a study left behind by a typo, a silently replaced model or an unannounced
validation Dice measured on training cases."""
from __future__ import annotations

import pytest
import torch

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.training.api import train_model
from AutoSegCore.prediction import predict_files
from AutoSegCore.inference.predictor import Predictor
from shared_data import HIPPO
from trainkit import tiny_config

SMALL = "Resources/Configs/small.yaml"


def settings(tmp_path, **kw) -> SearchSettings:
    return SearchSettings(data=str(HIPPO), out=str(tmp_path / "s"), **kw)


@pytest.mark.parametrize("kw, words", [
    ({"trials": None}, "needs a budget: trials or time_limit"),
    ({"time_limit": -5}, "time_limit = -5 must be a positive number of seconds"),
    ({"time_limit": "soon"}, "time_limit 'soon' is not a duration"),
    ({"trials": "2"}, "trials = '2' must be a whole number"),
    ({"steps_per_epoch": 0}, "steps_per_epoch = 0 must be ≥ 1"),
    ({"final_top_k": 0}, "--final-top-k 0 must be ≥ 1"),
    ({"final_folds": 1}, "--final-folds 1 must be 0 (none) or ≥ 2"),
    ({"device": "gpu7"}, "device 'gpu7' is not a device"),
    ({"strategy": "annealing"}, "unknown strategy 'annealing'"),
    ({"base_config": {"training": {"loss": "foo"}}}, "training.loss = 'foo' is not one of"),
    ({"base_config": {"training": {"epoch": 3}}}, "did you mean 'epochs'"),
    ({"base_config": 3}, "base_config must be a dict of sections or a config file path"),
])
def test_search_settings_refuse_what_the_command_line_refuses(tmp_path, kw, words):
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, **kw)
    assert words in err.value.message + " " + err.value.hint, err.value.message
    assert not (tmp_path / "s").exists()


def test_search_settings_take_durations_as_text_and_a_config_path(tmp_path):
    s = settings(tmp_path, epochs=1, time_limit="1h30m", trials=None, final_time="90s", base_config=SMALL)
    assert (s.min_epochs, s.time_limit, s.final_time) == (1, 5400.0, 90.0)       # min_epochs follows epochs
    assert s.base_config["network"]["channels"] == 8 and settings(tmp_path).min_epochs == 2


def test_run_search_on_a_missing_dataset_leaves_no_folder(tmp_path):
    from AutoSegCore.pipeline import run_search

    with pytest.raises(DatasetError, match="dataset not found"):
        run_search(SearchSettings(data=str(tmp_path / "nope"), out=str(tmp_path / "s"), trials=1))
    assert not (tmp_path / "s").exists()


def test_train_model_guards_its_folder_and_its_split(hippo, tmp_path):
    names = sorted(c.name for c in hippo.cases)
    with pytest.warns(UserWarning, match="both in training and validation: " + names[0]):
        train_model(hippo, tiny_config(epochs=1, steps_per_epoch=1), tmp_path / "same", train_cases=names[:3],
                    val_cases=names[:1], device="cpu")
    with pytest.raises(ConfigError, match="config must be a dict of sections or a config file path"):
        train_model(hippo, ["small.yaml"], tmp_path / "m")
    # a config file path and one case name as a string (not its characters)
    result = train_model(hippo, SMALL, tmp_path / "m", train_cases=names[0], val_cases=names[1], device="cpu")
    assert result.epochs_done >= 1 and (tmp_path / "m" / "model.pt").is_file()
    (tmp_path / "m" / "checkpoint.pt").unlink()                      # a finished model, as best/ holds it
    before = (tmp_path / "m" / "model.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a trained model"):
        train_model(hippo, SMALL, tmp_path / "m", train_cases=names[0], val_cases=names[1])
    assert (tmp_path / "m" / "model.pt").read_bytes() == before
    # one image path given as a string is one image
    image = hippo.case(names[2]).images[0]
    written = predict_files(Predictor(tmp_path / "m", device="cpu"), str(image), tmp_path / "pred")
    assert len(written) == 1 and (tmp_path / "pred" / f"{names[2]}.nii.gz").is_file()
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=True)            # still a loadable state dict
