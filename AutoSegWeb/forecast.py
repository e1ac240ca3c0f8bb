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
    """Mixed into :class:`AutoSegWeb.app.AutoSegWebApp` (its state, logic, dataset and search settings)."""

    def _init_plan_forecast(self) -> None:
        self.plan = PlanForecast(self.logic, on_result=self._plan_forecast_shown)
        s = self.state
        s.plan_rows, s.plan_status, s.plan_error, s.plan_busy, s.plan_stale = [], "", "", False, False
        s.change(*PLAN_SETTINGS)(self._plan_settings_changed)

    def _plan_key(self) -> tuple:
        try:
            return str(self.dataset_dir), self._search_parameters()
        except AutoSegError:          # values being edited: no plan can be current for them
            return str(self.dataset_dir), None

    @user_action
    def plan_forecast(self) -> None:
        dataset = self._require_dataset()
        self._require_idle()
        self.plan.request(dataset, self._run_dir(""), self._search_parameters(), key=self._plan_key())
        s = self.state
        s.plan_rows, s.plan_error, s.plan_busy, s.plan_stale = [], "", True, False
        s.plan_status = "planning and forecasting in the background (a few timed training steps)…"

    def _plan_forecast_shown(self, result: PlanForecastResult) -> None:
        s = self.state
        s.plan_rows = [{"name": n, "value": v, "why": w} for n, v, w in result.rows()]
        s.plan_status, s.plan_error, s.plan_busy = result.summary(), result.error, False
        self._plan_settings_changed()

    def _plan_settings_changed(self, **_) -> None:
        self.state.plan_stale = bool(self.state.plan_rows) and self.plan.stale(self._plan_key())

    def _stop_plan_forecast(self) -> None:
        if self.plan.running:
            self.state.plan_status = "stopped: the search forecasts again before its first trial"
        self.plan.cancel()
        self.state.plan_busy = False
