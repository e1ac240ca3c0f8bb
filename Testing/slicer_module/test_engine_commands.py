"""The panels' values → `autoseg` arguments, checked against the engine's own parser (the contract between them)."""
from __future__ import annotations

import pytest

from AutoSegCore.cli import build_parser
from AutoSegCore.commands.search import settings_from_args
from AutoSegSearchLib.engine_commands import EngineCommands
from AutoSegSearchLib.errors import ConfigError

commands = EngineCommands()


def _engine_settings(args: list[str]):
    return settings_from_args(build_parser().parse_args(args))


def test_search_budgets_reach_the_engine_as_seconds(tmp_path):
    args = commands.search_args(tmp_path / "data", tmp_path / "out", space="unet-recipe", strategy="bohb",
                                time_minutes=36, final_time_minutes=84, proxy_data="mi+roi:0.25")
    settings = _engine_settings(args)
    assert settings.time_limit == 36 * 60 and settings.trials is None
    assert settings.final_time == 84 * 60 and settings.final
    assert settings.space == "unet-recipe" and settings.proxy_data == "mi+roi:0.25"
    fractional = _engine_settings(commands.search_args(tmp_path, tmp_path / "o", trials=3, final_time_minutes=0.1))
    assert fractional.final_time == pytest.approx(6.0) and fractional.trials == 3
    # no final training: no final budget either
    assert "--final-time" not in commands.search_args(tmp_path, tmp_path / "o", final=False, final_time_minutes=5)


@pytest.mark.parametrize("kwargs, match", [({"final_time_minutes": 0}, "final training time"),
                                           ({"final_time_minutes": -3}, "final training time"),
                                           ({"trials": 0}, "trials"), ({"time_minutes": -1}, "time limit")])
def test_bad_panel_values_are_refused_before_anything_runs(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        commands.search_args(tmp_path, tmp_path / "o", **kwargs)


def test_proxy_arguments_and_budget_units(tmp_path):
    args = commands.proxy_args(tmp_path / "d", tmp_path / "o", method="ncc", roi=False,
                               budget=commands.budget_value(25, "% of cases"))
    parsed = build_parser().parse_args(args)
    assert (parsed.method, parsed.roi, parsed.budget) == ("ncc", "none", "0.25")
    assert commands.budget_value(12, "cases") == 12
    with pytest.raises(ConfigError):
        commands.budget_value(0.5, "cases")
    with pytest.raises(ConfigError):
        commands.proxy_args(tmp_path, tmp_path / "o", method="psnr")


def test_apply_flips_as_decided_on_or_off(tmp_path):
    """None keeps best/'s own decision (the engine's default); True/False force it, as `--tta` / `--no-tta`."""
    model = tmp_path / "search" / "best"
    model.mkdir(parents=True)
    (model / "model.pt").write_bytes(b"")
    parsed = {tta: build_parser().parse_args(commands.predict_args(tmp_path / "search", [tmp_path / "a.nii.gz"],
                                                                   tmp_path / "pred", tta=tta))
              for tta in (None, True, False)}
    assert {k: p.tta for k, p in parsed.items()} == {None: None, True: True, False: False}
    assert all(p.command == "predict" and p.model == str(model) for p in parsed.values())
    assert all(p.overwrite for p in parsed.values()), "Apply again must predict again, not keep an old mask"


def test_the_panels_offline_lists_are_the_engines():
    """The engine owns the spaces and strategies (``list_spaces``/``list_strategies``, which the panels ask);
    the Slicer library's own tuples serve only where the engine is not importable and must not drift."""
    from AutoSegCore.spaces import list_spaces
    from AutoSegCore.strategies import list_strategies
    from AutoSegSearchLib.engine_commands import SPACES, STRATEGIES, available_spaces, available_strategies

    assert sorted(SPACES) == sorted(list_spaces()) and available_spaces() == list_spaces()
    assert list(STRATEGIES) == list_strategies() == available_strategies()
