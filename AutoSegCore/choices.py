"""The choice lists the front ends offer (spaces, strategies, proxy methods, proxy networks), from their owners.

Each list has one owner in the engine; :func:`engine_choices` only gathers them, and ``autoseg choices [--json]``
prints them.  The Slicer module and the browser front end ask this (in their own interpreter, or through
``<engine python> -m AutoSegCore choices --json``) instead of keeping copies that could drift.

Cheap: the owners are imported inside the function, and none of them loads torch (the network graph rules are
in ``networks.topology``, the proxy-data methods in ``proxy.fidelity``).
"""
from __future__ import annotations

# the keys of engine_choices(), in the order `autoseg choices` prints them, with their printed titles
CHOICE_KEYS = {"spaces": "spaces", "strategies": "strategies", "proxy_methods": "proxy methods",
               "proxy_nets": "proxy networks"}


def engine_choices() -> dict[str, list[str]]:
    """The names each choice list of the front ends takes, from the engine's rule that owns it.

    - ``spaces``: the built-in search spaces, :func:`AutoSegCore.spaces.list_spaces` (``--space``; a YAML/JSON
      space file is accepted as well);
    - ``strategies``: :func:`AutoSegCore.strategies.registry.list_strategies` (``--strategy``);
    - ``proxy_methods``: :data:`AutoSegCore.proxy.fidelity.SELECTION_METHODS` (``autoseg proxy --method``, the METHOD of
      ``--proxy-data METHOD[+roi]:BUDGET``);
    - ``proxy_nets``: the ``--proxy-net`` presets, :data:`AutoSegCore.networks.proxy.PROXY_NETS` (other
      ``levels=N`` / ``width=F`` spellings are accepted as well).

    Returns fresh lists of strings (the caller may change them), e.g.
    ``engine_choices()["strategies"] == ["random", "tpe", "nsga2", "bohb", "rl", "crs", "moead"]``.
    """
    from AutoSegCore.networks.proxy import PROXY_NETS
    from AutoSegCore.proxy.fidelity import SELECTION_METHODS
    from AutoSegCore.spaces import list_spaces
    from AutoSegCore.strategies.registry import list_strategies

    return {"spaces": list(list_spaces()), "strategies": list(list_strategies()),
            "proxy_methods": list(SELECTION_METHODS), "proxy_nets": list(PROXY_NETS)}
