"""One owner per choice list: ``AutoSegCore.choices.engine_choices`` / ``autoseg choices`` gather the engine's own
lists (spaces, strategies, proxy methods, proxy-network presets), which the front ends ask instead of copying."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from AutoSegCore.choices import CHOICE_KEYS, engine_choices
from AutoSegCore.cli import build_parser, main
from AutoSegCore.networks.proxy import PROXY_NETS
from AutoSegCore.proxy.fidelity import Fidelity
from AutoSegCore.proxy.fidelity import SELECTION_METHODS
from AutoSegCore.spaces import get_space, list_spaces
from AutoSegCore.strategies.registry import list_strategies, make_sampler
from shared_data import REPO


def test_engine_choices_are_the_owners_lists():
    choices = engine_choices()
    assert choices == {"spaces": list_spaces(), "strategies": list_strategies(), "proxy_methods": list(SELECTION_METHODS),
                       "proxy_nets": list(PROXY_NETS)}
    assert list(choices) == list(CHOICE_KEYS)
    choices["spaces"].clear()                              # fresh lists: the caller may change them
    assert engine_choices()["spaces"] == list_spaces()


def test_every_offered_name_is_accepted_where_it_is_used():
    choices = engine_choices()
    assert [get_space(name).name for name in choices["spaces"]] == choices["spaces"]
    assert all(make_sampler(name, seed=0) is not None for name in choices["strategies"])
    for method in choices["proxy_methods"]:
        assert Fidelity.parse(f"{method}+roi:0.25").data_method == method
    for net in choices["proxy_nets"]:
        assert Fidelity.parse("full", net).net_label == net


@pytest.mark.parametrize("code,heavy", [
    # the owners are imported inside the function: the module alone pulls in neither torch nor optuna
    ("import AutoSegCore.choices, AutoSegCore.commands.choices", ("torch", "optuna", "numpy")),
    # a front end asks at start-up (the Slicer panel through a child process): the owners of the lists are
    # torch-free rules (spaces' YAML names, strategy registry, proxy.fidelity, networks.proxy/topology)
    ("from AutoSegCore.choices import engine_choices; engine_choices()", ("torch", "monai")),
], ids=["importing the module", "asking for the lists"])
def test_the_engines_lists_are_cheap_to_ask_for(code, heavy):
    probe = f"import sys; {code}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_autoseg_choices_json_in_a_child_process_gives_the_engines_lists():
    out = subprocess.run([sys.executable, "-m", "AutoSegCore", "choices", "--json"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == engine_choices()


def test_autoseg_choices_prints_one_line_per_list_and_is_in_the_help(capsys):
    assert main(["choices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    choices = engine_choices()
    assert [line.split("  ")[0].strip() for line in lines] == list(CHOICE_KEYS.values())
    for line, key in zip(lines, CHOICE_KEYS):
        assert line.rstrip().endswith(", ".join(choices[key]))
    assert "choices" in build_parser().format_help()
