"""The panels' values → `autoseg` arguments, checked against the engine's own parser (the contract between them)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from AutoSegCore.cli import build_parser
from AutoSegCore.commands.search import settings_from_args
from AutoSegSearchLib.engine_commands import EngineCommands
from AutoSegSearchLib.errors import ConfigError, DatasetError
from AutoSegSearchLib.run_parameters import SearchParameters as P
from AutoSegSearchLib.run_parameters import budget_value

commands = EngineCommands()


def _engine_settings(args: list[str]):
    return settings_from_args(build_parser().parse_args(args))


def test_search_budgets_reach_the_engine_as_seconds(tmp_path):
    args = P(space="unet-recipe", strategy="bohb", time_minutes=36, final_time_minutes=84,
             proxy_data="mi+roi:0.25").search_args(tmp_path / "data", tmp_path / "out")
    settings = _engine_settings(args)
    assert settings.time_limit == 36 * 60 and settings.trials is None
    assert settings.final_time == 84 * 60 and settings.final
    assert settings.space == "unet-recipe" and settings.proxy_data == "mi+roi:0.25"
    fractional = _engine_settings(P(trials=3, final_time_minutes=0.1).search_args(tmp_path, tmp_path / "o"))
    assert fractional.final_time == pytest.approx(6.0) and fractional.trials == 3
    # no final training: no final budget either
    assert "--final-time" not in P(final=False, final_time_minutes=5).search_args(tmp_path, tmp_path / "o")


def test_plan_and_forecast_is_the_same_search_stopped_before_its_first_trial(tmp_path):
    """Plan & forecast runs the panel's own search settings with --forecast-only, never in the user's storage."""
    panel = P(space="proxy-hpo", strategy="random", trials=3, time_minutes=30, proxy_net="levels=3",
              final_time_minutes=5, device="cpu")
    parsed = build_parser().parse_args(panel.forecast_args(tmp_path / "data", tmp_path / "pf"))
    search = build_parser().parse_args(panel.search_args(tmp_path / "data", tmp_path / "pf",
                                                         storage="postgresql://user@db/studies"))
    assert parsed.forecast_only and not search.forecast_only
    assert parsed.storage is None and search.storage == "postgresql://user@db/studies"
    same = ("data", "space", "strategy", "time", "trials", "proxy_net", "final_time", "device", "out")
    assert [getattr(parsed, k) for k in same] == [getattr(search, k) for k in same]
    with pytest.raises(ConfigError, match="trials"):
        P(trials=0)


@pytest.mark.parametrize("kwargs, match", [({"final_time_minutes": 0}, "final training time"),
                                           ({"final_time_minutes": -3}, "final training time"),
                                           ({"trials": 0}, "trials"), ({"time_minutes": -1}, "time limit")])
def test_bad_panel_values_are_refused_before_anything_runs(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        P(**kwargs)


CHOICES = {"spaces": ["unet-pipeline", "proxy-hpo"], "strategies": ["random", "bohb"], "proxy_methods": ["mi", "ncc"],
           "proxy_nets": ["full", "levels=3"]}


def test_the_slicer_panel_and_the_web_page_give_the_same_search(tmp_path):
    """One parameter set: Qt's typed values and a browser's strings become the same value and the same arguments."""
    from AutoSegWeb.checks import SEARCH_FIELDS

    qt = dict(space="proxy-hpo", strategy="bohb", trials=5, time_minutes=None, final_time_minutes=12.5,
              use_proxy_data=True, proxy_method="ncc", proxy_roi=True, proxy_budget=25.0,
              proxy_budget_unit="% of cases", proxy_net="levels=3", device="cpu")
    page = {name: str(qt[key]) if isinstance(qt[key], (int, float)) and not isinstance(qt[key], bool) else qt[key]
            for key, name in SEARCH_FIELDS.items() if key in qt}
    page.update(search_minutes="", proxy_unit="%")
    web = P.from_panel(CHOICES, **{key: page[name] for key, name in SEARCH_FIELDS.items() if name in page},
                       device="cpu")
    assert P.from_panel(CHOICES, **qt) == web
    assert web.proxy_data == "ncc+roi:0.25" and web.trials == 5 and web.final_time_minutes == 12.5
    assert web.search_args(tmp_path, tmp_path / "o") == P.from_panel(CHOICES, **qt).search_args(tmp_path, tmp_path / "o")
    # every field the page keeps is one from_panel takes, and Start and Plan & forecast read the same keys
    import inspect
    assert set(SEARCH_FIELDS) <= set(inspect.signature(P.from_panel).parameters)


@pytest.mark.parametrize("field, value, match", [
    ("space", "../../etc/evil.yaml", "space '../../etc/evil.yaml' is not one of the page's choices"),
    ("trials", "2; rm -rf /", "trials '2; rm -rf /' is not a positive whole number"),
    ("trials", "1.5", "not a positive whole number"), ("time_minutes", "-3", "search minutes '-3'"),
    ("proxy_budget", "lots", "proxy budget 'lots' is not a number"),
    ("proxy_budget_unit", "kg", "proxy budget unit 'kg'"), ("proxy_net", "levels=99", "proxy network")])
def test_a_bad_panel_value_names_its_field(field, value, match):
    values = dict(space="proxy-hpo", strategy="random", trials="2", use_proxy_data=True, proxy_budget="25",
                  proxy_budget_unit="%")
    with pytest.raises((ConfigError, DatasetError), match=re.escape(match)):
        P.from_panel(CHOICES, **{**values, field: value})


def test_proxy_arguments_and_budget_units(tmp_path):
    args = commands.proxy_args(tmp_path / "d", tmp_path / "o", method="ncc", roi=False,
                               budget=budget_value(25, "% of cases"))
    parsed = build_parser().parse_args(args)
    assert (parsed.method, parsed.roi, parsed.budget) == ("ncc", "none", "0.25")
    assert budget_value(12, "cases") == 12
    with pytest.raises(ConfigError):
        budget_value(0.5, "cases")
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


def test_the_panels_lists_are_the_engines_asked_in_this_python():
    """The engine owns the lists (``AutoSegCore.choices.engine_choices``); the Slicer library asks it and keeps no
    copies (no offline fallback that could drift)."""
    from AutoSegCore.choices import engine_choices as owners
    from AutoSegCore.spaces import list_spaces
    from AutoSegCore.strategies import list_strategies
    from AutoSegSearchLib import engine_commands, logic

    lists = engine_commands.engine_choices()
    assert lists == owners() and lists["spaces"] == list_spaces() and lists["strategies"] == list_strategies()
    assert commands.engine_choices() == lists
    lists["spaces"].clear()                                  # the caller's copy, not the cache
    assert engine_commands.engine_choices()["spaces"] == list_spaces()
    for name in ("SPACES", "STRATEGIES", "PROXY_METHODS", "available_spaces", "available_strategies"):
        assert not hasattr(engine_commands, name) and not hasattr(logic, name), name
    # proxy_args checks the method against the engine's list and names it in the hint
    with pytest.raises(ConfigError) as err:
        commands.proxy_args("d", "o", method="psnr")
    assert err.value.hint == "use one of " + ", ".join(lists["proxy_methods"])


def test_no_front_end_file_keeps_a_copy_of_an_engine_list():
    """No literal in AutoSegSearchLib, AutoSegWeb or the Widget lists two names of one engine list (a tuple, a list,
    or a list inside a page expression such as ``"['mi', 'ncc', 'random']"``)."""
    import ast
    import re

    from AutoSegCore.choices import engine_choices as owners
    from slicer_testkit import MODULE_DIR, REPO

    lists = {key: set(values) for key, values in owners().items()}
    files = [*sorted((MODULE_DIR / "AutoSegSearchLib").glob("*.py")), MODULE_DIR / "AutoSegSearch.py",
             *sorted((REPO / "AutoSegWeb").glob("*.py"))]
    copies = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = re.findall(r"'([^'\s]+)'", node.value)
            for key, values in lists.items():
                if len(values & set(names)) >= 2:
                    copies.append(f"{path.name}:{node.lineno} holds {key}: {sorted(values & set(names))}")
    assert not copies, "\n".join(copies)


def test_the_slicer_library_asks_another_python_through_autoseg_choices():
    """A python given explicitly is asked through ``<python> -m AutoSegCore choices --json`` (a real child
    process), once: the answer is cached per python."""
    from AutoSegCore.choices import engine_choices as owners
    from AutoSegSearchLib import engine_commands

    before = engine_commands._engine_choices.cache_info()
    asked = EngineCommands()
    asked.python = sys.executable
    assert asked.engine_choices() == owners()
    after = engine_commands._engine_choices.cache_info()
    assert after.currsize > before.currsize or after.hits > before.hits   # the child's answer is cached
    hits = after.hits
    assert engine_commands.engine_choices(sys.executable) == owners()
    assert engine_commands._engine_choices.cache_info().hits == hits + 1  # asked once, not twice


def test_an_engine_python_that_cannot_answer_gives_a_clear_error(tmp_path):
    """No stale fallback: a python that does not exist, or is not a program, is named with the fix."""
    from AutoSegSearchLib import engine_commands
    from AutoSegSearchLib.engine_commands import engine_choices

    missing = tmp_path / "no-such-python"
    with pytest.raises(ConfigError, match="cannot run the engine's Python .*no-such-python") as err:
        engine_choices(str(missing))
    assert "give a Python program where AutoSegCore is installed" in err.value.hint
    not_a_program = tmp_path / "python"
    not_a_program.write_text("not a program\n")
    with pytest.raises(ConfigError, match=re.escape(str(not_a_program))):
        engine_choices(str(not_a_program))
    # a real Python without the engine's packages (the system one under this venv): its own error, named
    bare = Path(sys.base_prefix) / "bin" / "python3"
    if not bare.is_file() or subprocess.run([bare, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("no Python without the engine's packages here")
    cached = engine_commands._engine_choices.cache_info().currsize
    with pytest.raises(ConfigError, match=rf"{re.escape(str(bare))} cannot run 'autoseg choices': .*No module") as err:
        engine_choices(str(bare))
    assert "install the engine into that Python" in err.value.hint
    assert engine_commands._engine_choices.cache_info().currsize == cached      # failures are not cached


def test_apply_finds_a_search_s_ensemble_best(tmp_path):
    """A search with --final-top-k 2 leaves best/ as an ensemble folder (ensemble.json + members/, no model.pt):
    Apply resolves the search folder to it, and the engine's Predictor loads both members from it."""
    from shared_data import HIPPO
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.search.final import install_best
    from AutoSegCore.training.api import train_model
    from AutoSegCore.inference.predictor import Predictor

    ds = load_dataset(HIPPO)
    names = sorted(c.name for c in ds.cases)[:3]
    cfg = {"network": {"depth": 2, "channels": 4, "n_convs": 1},
           "training": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "warmup_steps": 0}}
    members = [train_model(ds, cfg, tmp_path / f"m{i}", train_cases=names[:2], val_cases=names[2:], device="cpu").model_dir for i in range(2)]
    best = install_best(tmp_path / "search", members, ds.labels, [])
    assert not (best / "model.pt").exists() and (best / "ensemble.json").is_file()
    args = build_parser().parse_args(commands.predict_args(tmp_path / "search", [tmp_path / "a.nii.gz"],
                                                           tmp_path / "pred"))
    assert args.model == str(best)
    assert len(Predictor(args.model, device="cpu").members) == 2
    with pytest.raises(DatasetError, match="model.pt or ensemble.json"):
        commands.predict_args(tmp_path / "m0" / "missing", [tmp_path / "a.nii.gz"], tmp_path / "pred")
