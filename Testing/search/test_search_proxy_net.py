"""What a search keeps of its space under each proxy-net rule (prepare only, no trials, on real Hippocampus).

The proxy paper's fixed proxy network (levels=N) trains one size for every trial, so the runner drops the size
parameters; the width rule keeps their order, so the space stays whole and the proxy-network search samples exactly
what a full-fidelity search with the same seed samples, while every trial trains a shrunk copy of its own network."""
import pytest

from AutoSegCore.networks import proxy_network
from AutoSegCore.search.runner import SearchRunner
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.spaces import get_space

SIZE = {"depth", "channels", "n_convs"}


@pytest.fixture
def prepared(dataset, tmp_path, monkeypatch):
    """The prepared study (``PreparedStudy``) of a unet-pipeline random search with the given --proxy-net; closes
    what the runner started."""
    monkeypatch.setenv("AUTOSEG_FORKSERVER", "0")          # prepare only: no trial process is ever started
    runners = []

    def make(proxy_net: str):
        settings = SearchSettings(data=str(dataset), out=str(tmp_path / proxy_net.replace(",", "_")),
                                  space="unet-pipeline", strategy="random", proxy_net=proxy_net, trials=4,
                                  epochs=2, min_epochs=1, seed=7)
        runner = SearchRunner(settings)
        runners.append(runner)
        return runner.prepare()

    yield make
    for runner in runners:
        runner.launcher.close()


def test_fixed_proxy_drops_the_size_and_the_width_rule_keeps_it(prepared):
    full_space = set(get_space("unet-pipeline").distributions())
    fixed = prepared("levels=3")
    assert sorted(fixed.fixed_by_proxy_net) == sorted(SIZE)
    assert set(fixed.space.distributions()) == full_space - SIZE
    assert fixed.study.user_attrs["fixed_by_proxy_net"] == fixed.fixed_by_proxy_net

    for spelling, label in (("width=0.25", "width=0.25"), ("width=0.25, levels=3", "levels=3,width=0.25")):
        width = prepared(spelling)
        assert width.fixed_by_proxy_net == []
        assert set(width.space.distributions()) == full_space
        assert width.study.user_attrs["proxy_net"] == label
        assert width.study.user_attrs["fixed_by_proxy_net"] == []


def test_width_search_samples_what_a_full_search_samples(prepared):
    full, width = prepared("full"), prepared("levels=3,width=0.25")
    assert (width.train_cases, width.val_cases) == (full.train_cases, full.val_cases)
    for _ in range(4):                     # the runner's own sampling path of _start_trial, without the child
        p_full, p_width = full.space.suggest(full.study.ask()), width.space.suggest(width.study.ask())
        assert p_full == p_width
        cfg = width.space.to_config(p_width, width.settings.base_config)
        trained = width.fidelity.apply_network(cfg["network"])
        assert trained == proxy_network(cfg["network"], levels=3, width=0.25)
        assert trained["depth"] == min(cfg["network"]["depth"], 3) and trained["n_convs"] == min(p_width["n_convs"], 1)
        assert trained["channels"] == max(4, (cfg["network"]["channels"] + 2) // 4)     # round half up of c · 0.25
        assert cfg["network"]["channels"] == round(16 * p_width["channels"])   # the final net is the searched one (× the 16 of no plan)
        assert full.fidelity.apply_network(cfg["network"]) == cfg["network"]
