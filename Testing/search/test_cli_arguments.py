"""Counts, amounts and durations typed on the command line: 0, negatives, empty or garbled values are refused
with exit code 2 and a one-line message before anything is written (they were silently read as "not given" or
"no limit": `--epochs 0` trained the config's epochs, `--time ""` searched 20 trials, `--time 0` made an empty
study, `--min-epochs 5 --epochs 1` was quietly lowered)."""
from __future__ import annotations

import pytest

from AutoSegCore.cli import main
from AutoSegCore.search.settings import parse_duration
from shared_data import HIPPO as DATA


def run_cli(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:                     # argparse refuses a value with SystemExit(2)
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["train", "--epochs", "0"], "argument --epochs: must be a whole number ≥ 1, not 0"),
    (["train", "--steps-per-epoch", "0"], "argument --steps-per-epoch: must be a whole number ≥ 1, not 0"),
    (["train", "--epochs", "two"], "argument --epochs: 'two' is not a whole number"),
    (["train", "--time", ""], "--time '' is not a duration"),
    (["train", "--time", "1m1m"], "--time '1m1m' is not a duration"),
    (["search", "--time", "0"], "--time '0' must be a duration longer than zero"),
    (["search", "--time", "0s"], "--time '0s' must be a duration longer than zero"),
    (["search", "--final-time", "30s2h"], "--final-time '30s2h' is not a duration"),
    (["search", "--trial-timeout=-5m"], "--trial-timeout '-5m' is not a duration"),
    (["search", "--steps-per-epoch", "0"], "argument --steps-per-epoch: must be a whole number ≥ 1"),
    (["search", "--epochs", "1", "--min-epochs", "5"], "--min-epochs 5 is more than --epochs 1"),
    (["search", "--final-top-k", "0"], "argument --final-top-k: must be a whole number ≥ 1"),
    (["search", "--final-folds", "1"], "argument --final-folds: must be 0 (no cross-validation) or ≥ 2, not 1"),
    (["search", "--trial-memory-gb", "-1"], "argument --trial-memory-gb: must be a number above 0"),
    (["search", "--trial-memory-gb", "nan"], "argument --trial-memory-gb: 'nan' is not a finite number"),
    (["search", "--jobs", "-2"], "argument --jobs: must be a whole number ≥ 1, not -2"),
    (["demo", "--trials", "0"], "argument --trials: must be a whole number ≥ 1, not 0"),
    (["validate", "--min-cases", "-1"], "argument --min-cases: must be a whole number ≥ 1, not -1"),
    (["worker", "--trials", "0"], "argument --trials: must be a whole number ≥ 1, not 0"),
    (["proxy", "--device", "banana"], "argument --device: 'banana' is not a device: use auto, cpu, cuda or cuda:N"),
    (["train", "--device", "gpu"], "argument --device: 'gpu' is not a device"),
    (["search", "--device", "cuda:x"], "argument --device: 'cuda:x' is not a device"),
])
def test_a_bad_count_or_duration_is_refused_before_any_work(tmp_path, capsys, args, expected):
    command, rest = args[0], args[1:]
    out = tmp_path / "out"
    where = {"train": [DATA, "--out", out], "search": [DATA, "--out", out], "demo": ["--out", out],
             "proxy": [DATA, "--out", out],
             "validate": [DATA], "worker": ["--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "s",
                                            "--out", out]}[command]
    code, err = run_cli(capsys, command, *where, *rest)
    assert code == 2, err
    assert expected in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []                 # no --out, no database file, nothing


def test_durations_in_every_accepted_form():
    assert [parse_duration(t) for t in ("90s", "30m", "2h", "1h30m", "1.5h", "90", ".5m", "1h 30m", "2H")] == \
        [90, 1800, 7200, 5400, 5400, 90, 30, 5400, 7200]
    assert parse_duration(None) is None                   # not given: no limit


def test_min_epochs_follows_a_small_epoch_cap_when_not_given(tmp_path):
    from AutoSegCore.commands.search import settings_from_args
    from AutoSegCore.cli import build_parser

    args = build_parser().parse_args(["search", str(DATA), "--epochs", "1", "--out", str(tmp_path / "s")])
    assert settings_from_args(args).min_epochs == 1
    args = build_parser().parse_args(["search", str(DATA), "--out", str(tmp_path / "s")])
    assert settings_from_args(args).min_epochs == 2


def test_a_worker_pointed_at_a_missing_sqlite_file_creates_nothing(tmp_path, capsys):
    db = tmp_path / "typo.db"
    code, err = run_cli(capsys, "worker", "--storage", f"sqlite:///{db}", "--study", "s", "--out", tmp_path / "w")
    assert code == 2 and f"no study database at {db}" in err and "Traceback" not in err, err
    assert not db.exists()
