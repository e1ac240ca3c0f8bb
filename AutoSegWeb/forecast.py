"""The Search panel's Plan & forecast: the dataset's plan and the search's cost forecast before Start.

The engine answers in a child process (``AutoSegSearchLib.plan_forecast.PlanForecast``: ``autoseg search
--forecast-only`` with the panel's settings, the same runner as the Slicer module's), polled by the app's loop like
every engine run, so the page stays responsive while a CPU plan times its training steps.  Pressing the button
again supersedes the running request; a setting changed after the answer marks it stale; Start stops it.
"""
from __future__ import annotations

from AutoSegCore.errors import AutoSegError
from AutoSegWeb.actions import user_action
from AutoSegWeb.checks import SEARCH_FIELDS
from AutoSegWeb.slicer_lib import PlanForecast, PlanForecastResult

# the page's state keys a plan and forecast depend on (a change marks a shown answer stale)
PLAN_SETTINGS = ("dataset", *SEARCH_FIELDS.values())


class PlanForecastPanel:
    """The panel's part of the page: its state keys, its button's action, the runner the app's loop polls
    (``runner``).  ``app`` is the :class:`AutoSegWeb.app.AutoSegWebApp` whose dataset and search settings it reads."""

    def __init__(self, app) -> None:
        self.app, self.state = app, app.state
        self.runner = PlanForecast(app.logic.engine, on_result=self._shown)
        self.reset()
        self.state.change(*PLAN_SETTINGS)(self._settings_changed)

    def reset(self) -> None:
        """No plan shown (a new page)."""
        s = self.state
        s.plan_rows, s.plan_status, s.plan_error, s.plan_busy, s.plan_stale = [], "", "", False, False

    def _key(self) -> tuple:
        try:
            return str(self.app.dataset_dir), self.app.search_parameters()
        except AutoSegError:          # values being edited: no plan can be current for them
            return str(self.app.dataset_dir), None

    @user_action
    def request(self) -> None:
        """The button: plan and forecast the page's settings in a child process."""
        dataset = self.app.require_dataset()
        self.app.require_idle()
        self.runner.request(dataset, self.app.run_dir(""), self.app.search_parameters(), key=self._key())
        s = self.state
        s.plan_rows, s.plan_error, s.plan_busy, s.plan_stale = [], "", True, False
        s.plan_status = "planning and forecasting in the background (a few timed training steps)…"

    def _shown(self, result: PlanForecastResult) -> None:
        s = self.state
        s.plan_rows = [{"name": n, "value": v, "why": w} for n, v, w in result.rows()]
        s.plan_status, s.plan_error, s.plan_busy = result.summary(), result.error, False
        self._settings_changed()

    def _settings_changed(self, **_) -> None:
        self.state.plan_stale = bool(self.state.plan_rows) and self.runner.stale(self._key())

    def stop(self) -> None:
        """A search starts: it forecasts again before its first trial."""
        if self.runner.running:
            self.state.plan_status = "stopped: the search forecasts again before its first trial"
        self.runner.cancel()
        self.state.plan_busy = False
