"""``--proxy-net`` spellings: the proxy paper's fixed proxy network (levels=N), the rank-preserving width rule
(width=F) and both."""
import ast
import xml.etree.ElementTree as ET

import pytest

from AutoSegCore.config import DEFAULT_CONFIG
from AutoSegCore.errors import ConfigError
from AutoSegCore.networks import proxy_network
from AutoSegCore.proxy.fidelity import Fidelity, ladder
from shared_data import REPO

NET = {**DEFAULT_CONFIG["network"], "channels": 32, "depth": 5, "n_convs": 3}


@pytest.mark.parametrize("text,levels,width,label", [
    ("full", None, None, "full"),
    (None, None, None, "full"),
    ("levels=3", 3, None, "levels=3"),
    ("4", 4, None, "levels=4"),
    (" LEVELS=5 ", 5, None, "levels=5"),
    ("width=0.25", None, 0.25, "width=0.25"),
    ("width=1", None, 1.0, "width=1"),
    ("levels=3,width=0.5", 3, 0.5, "levels=3,width=0.5"),
    ("width=0.5, levels=4", 4, 0.5, "levels=4,width=0.5"),
    ("width = .125 ,levels = 2", 2, 0.125, "levels=2,width=0.125"),
    ("width=0.1234567891", None, 0.1234567891, "width=0.1234567891"),
])
def test_parse_and_labels_round_trip(text, levels, width, label):
    f = Fidelity.parse("full", text)
    assert (f.net_levels, f.net_width, f.net_label) == (levels, width, label)
    assert Fidelity.parse("full", f.net_label) == f
    assert f.is_full == (levels is None and width is None)
    assert f.fixes_network_size == (levels is not None and width is None)
    assert f.to_dict() == {"data": "full", "net": label}


@pytest.mark.parametrize("text", ["width=0", "width=1.5", "width=abc", "width=-0.25", "width=nan", "width=inf",
                                  "width=", "levels=3,levels=4", "width=0.5,width=0.25", "foo=1", "levels=7",
                                  "levels=1,width=0.5", "levels=3.5", "3,width=0.5", "levels=3,", "levels=3;width=0.5",
                                  "half"])
def test_bad_spellings_are_config_errors_with_the_accepted_forms(text):
    with pytest.raises(ConfigError, match="proxy-net") as err:
        Fidelity.parse("full", text)
    assert all(form in err.value.hint for form in ("full", "levels=N", "width=F", "levels=N,width=F"))


def test_apply_network_uses_the_rule_asked_for():
    assert Fidelity.parse("full", "full").apply_network(NET) == NET
    assert Fidelity.parse("full", "levels=3").apply_network(NET) == proxy_network(NET, levels=3)
    width = Fidelity.parse("full", "width=0.25").apply_network(NET)
    assert (width["channels"], width["n_convs"], width["depth"]) == (8, 1, 5)
    both = Fidelity.parse("mi+roi:0.25", "width=0.25,levels=3").apply_network(NET)
    assert (both["channels"], both["n_convs"], both["depth"]) == (8, 1, 3)


def test_data_and_net_fidelities_combine_and_ladder_is_unchanged():
    f = Fidelity.parse("ncc+roi:20", "levels=4,width=0.5")
    assert f.describe() == "data ncc+roi:20 / net levels=4,width=0.5" and not f.is_full
    assert [r.net_label for r in ladder()] == ["full", "full", "levels=5", "levels=4", "levels=3",
                                                "levels=5", "levels=4", "levels=3"]


def test_every_proxy_net_offered_by_the_front_ends_is_accepted():
    """The front ends offer the engine's presets (``engine_choices()["proxy_nets"]``) and keep no copy of them."""
    from AutoSegCore.choices import engine_choices

    ui = ET.parse(REPO / "AutoSegSearch" / "Resources" / "UI" / "AutoSegSearch.ui").getroot()
    combo = next(w for w in ui.iter("widget") if w.get("name") == "proxyNetworkComboBox")
    assert not combo.findall("item"), "the Slicer combo box is filled from the engine's list"
    tree = ast.parse((REPO / "AutoSegWeb" / "app.py").read_text())
    assert not [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "PROXY_NETS"]
    items = engine_choices()["proxy_nets"]
    assert "width=0.25" in items
    for text in items:
        assert Fidelity.parse("full", text).net_label == text
