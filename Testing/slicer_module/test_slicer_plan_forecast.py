"""Plan & forecast before Start: the real engine as a child process (``autoseg search --forecast-only``) plans a
real dataset and forecasts the search, the module's Widget fills its read-only table from that answer, and a
newer request supersedes an older one.  The Widget runs with stand-in Qt (conftest ``module_with_stubs``) and
recording stand-in widgets: its table filler and settings are the module's own code."""
from __future__ import annotations

import json
import time
import types
from dataclasses import replace

import psutil
import pytest

from AutoSegSearchLib.errors import ConfigError
from AutoSegSearchLib.plan_forecast import PlanForecast, read_plan_forecast
from AutoSegSearchLib.process import ProcessState
from AutoSegSearchLib.run_parameters import SearchParameters
from shared_data import make_subset

CPU = {"AUTOSEG_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


class RecordingTable:
    """What the Widget calls on its QTableWidget, recorded."""

    def __init__(self):
        self.rows, self.items = 0, {}

    def setRowCount(self, n):
        self.rows = n
        self.items = {k: v for k, v in self.items.items() if k[0] < n}

    def setItem(self, row, column, item):
        self.items[row, column] = item

    def cells(self):
        return [tuple(self.items[r, c].text for c in range(2)) for r in range(self.rows)]


def wait(runner, timeout=300):
    """What the Widget's timer does: poll, never block."""
    deadline = time.monotonic() + timeout
    while runner.active and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.2)
    assert not runner.active, "plan & forecast did not finish"


@pytest.mark.slow
def test_the_childs_plan_and_forecast_fill_the_widget_before_start(module_with_stubs, logic, tmp_path):
    data = make_subset(tmp_path / "Hippo8", 8)
    widget = module_with_stubs.AutoSegSearchWidget()
    widget.logic = logic
    widget.ui = types.SimpleNamespace(planTable=RecordingTable(), planStatusLabel=types.SimpleNamespace(text=""),
                                      folderSourceRadioButton=types.SimpleNamespace(checked=True))
    widget._parameterNode = p = module_with_stubs.AutoSegSearchLogic().getParameterNode()
    p.datasetFolder, p.space, p.proxyNetwork, p.timeLimitMinutes, p.device = data, "proxy-hpo", "levels=3", 30, "cpu"
    widget._planForecast = runner = PlanForecast(logic.engine, on_result=widget.showPlanForecast)   # as setup() wires it

    # an older request, then a newer one with other settings: only the newer answer reaches the Widget
    older = runner.request(data, tmp_path / "out", replace(widget.searchParameters(), trials=2), key="older", env=CPU)
    older_tree = older.process_tree()
    runner.request(data, tmp_path / "out", widget.searchParameters(), key=widget.planKey(), env=CPU)
    assert widget.ui.planTable.rows == 0
    wait(runner)
    assert older.state == ProcessState.CANCELLED and not older.events_path.parent.exists()
    assert not any(q.is_running() and q.status() != psutil.STATUS_ZOMBIE for q in older_tree)

    shown = runner.shown
    assert shown.key == widget.planKey() and shown.error == "" and shown.folder.parent == tmp_path / "out"
    plan = json.loads((shown.folder / "plan.json").read_text())
    forecast = json.loads((shown.folder / "forecast.json").read_text())
    cells = dict(widget.ui.planTable.cells())
    assert cells["patch"] == "×".join(map(str, plan["choices"]["patch_size"]["value"]))
    assert cells["batch"] == str(plan["choices"]["batch_size"]["value"])
    assert cells["trials"] == f"≈ {forecast['trials']} fit in 30.0 min" and forecast["time_budget"] == 1800
    assert {"target spacing", "network", "normalisation", "epochs (plan)", "per trial", "search",
            "final training", "total"} <= set(cells)
    tips = {widget.ui.planTable.items[r, 0].text: widget.ui.planTable.items[r, 0].toolTip
            for r in range(widget.ui.planTable.rows)}
    assert tips["patch"] == plan["choices"]["patch_size"]["why"]
    assert widget.ui.planStatusLabel.text == shown.summary() and "Hippocampus" in shown.summary()
    # before Start: the search's set-up and forecast only — no trial started, no search folder, Start not pressed
    events = [json.loads(line)["event"] for line in (shown.folder / "search.events.jsonl").read_text().splitlines()]
    assert "forecast" in events and "trial_started" not in events and not (shown.folder / "trials").exists()
    assert widget._searchDir is None

    # a changed setting marks the answer stale; changing it back shows it again
    p.strategy = "tpe"
    widget.onSettingsChanged()
    assert widget.ui.planStatusLabel.text.startswith("settings changed since")
    p.strategy = "random"
    widget.onSettingsChanged()
    assert widget.ui.planStatusLabel.text == shown.summary()


@pytest.mark.slow
def test_an_engine_refusal_is_shown_as_its_message_and_a_bad_value_starts_nothing(logic, tmp_path):
    data = make_subset(tmp_path / "Hippo4", 4)
    results = []
    runner = PlanForecast(logic.engine, on_result=results.append)
    with pytest.raises(ConfigError, match="trials"):
        runner.request(data, tmp_path / "out", SearchParameters(trials=0))
    assert runner.proc is None and not (tmp_path / "out").exists()

    runner.request(data, tmp_path / "out", SearchParameters(space="emonas", strategy="bohb", trials=2, device="cpu"),
                   env=CPU)
    wait(runner, timeout=120)
    [result] = results
    assert result.plan is None and "objectives" in result.error and "use one of" in result.error
    assert result.rows() == [("forecast", "–", result.error)] and result.summary().startswith("no plan: ")
    assert read_plan_forecast(tmp_path / "nowhere").plan is None
