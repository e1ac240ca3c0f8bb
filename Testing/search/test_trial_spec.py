"""The contract between a search and its trial process: one versioned schema, checked once, JSON round-trip."""
from __future__ import annotations

import json

import pytest

from AutoSegCore.errors import ConfigError
from AutoSegCore.search.trial_spec import TRIAL_SPEC_VERSION, TrialSpec, study_pruner

SPEC = dict(number=3, trial_id=4, storage="sqlite:///study.db", study_name="s", strategy="bohb",
            directions=["maximize"], data="/data/Hippocampus", config={"training": {"epochs": 6}},
            train_cases=["a", "b"], val_cases=["c"], min_epochs=2, threads=1, device="cuda:1")


def test_spec_round_trips_through_its_file(tmp_path):
    spec = TrialSpec(**SPEC)
    spec.write(tmp_path)
    back = TrialSpec.read(tmp_path)
    assert back == spec and back.version == TRIAL_SPEC_VERSION
    assert back.epochs == 6 and back.device == "cuda:1"          # epochs travel once: the config's
    assert set(json.loads((tmp_path / "spec.json").read_text())) == set(spec.to_dict())


@pytest.mark.parametrize("change, word", [({"threads": 0}, "threads"), ({"min_epochs": 7}, "min_epochs"),
                                          ({"directions": ["up"]}, "directions"), ({"version": 99}, "version"),
                                          ({"config": {"training": {}}}, "config"), ({"surprise": 1}, "surprise")])
def test_a_wrong_spec_is_refused_naming_the_field(change, word):
    with pytest.raises(ConfigError, match=word):
        TrialSpec.from_dict({**SPEC, **change})


def test_the_pruner_is_built_in_one_place():
    assert type(study_pruner("bohb", 1, 2, 6)).__name__ == "HyperbandPruner"
    assert study_pruner("bohb", 2, 2, 6) is None
    assert type(study_pruner("random", 1, 1, 6)).__name__ == "NopPruner"
