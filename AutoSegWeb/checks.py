"""What a client sends is checked on the server: every page value is state a client can set to anything (trame
syncs the whole state both ways), so lists come from the server's own copies (the engine's choices, the chosen
dataset's cases), never from the state, and numbers are parsed with a message, never a traceback — by the same
functions and the same :class:`SearchParameters` as the Slicer panel's (``AutoSegSearchLib.run_parameters``)."""
from __future__ import annotations

from AutoSegSearchLib.run_parameters import SearchParameters

__all__ = ["SEARCH_FIELDS", "search_parameters"]

# the Search panel: SearchParameters.from_panel's keyword → the page's state key (a change to any marks a shown
# plan and forecast stale)
SEARCH_FIELDS = {"space": "space", "strategy": "strategy", "trials": "trials", "time_minutes": "search_minutes",
                 "final_time_minutes": "final_minutes", "use_proxy_data": "search_on_proxy",
                 "proxy_method": "proxy_method", "proxy_roi": "proxy_roi", "proxy_budget": "proxy_budget",
                 "proxy_budget_unit": "proxy_unit", "proxy_net": "proxy_net", "epochs": "epochs",
                 "steps_per_epoch": "steps_per_epoch", "final_epochs": "final_epochs"}


def search_parameters(state, choices) -> SearchParameters:
    """The page's Search panel as one checked value (seed 0: the page's runs repeat)."""
    return SearchParameters.from_panel(choices, **{key: state[name] for key, name in SEARCH_FIELDS.items()},
                                       seed=0)
