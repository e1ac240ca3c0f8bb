"""Plan & forecast before Start, in the served page: the engine's plan and cost forecast for the Search panel's
settings, from a child process, shown read-only before any search runs; the README's picture of that panel is
this test's screenshot (docs/screenshots/web-plan-forecast.png)."""
from __future__ import annotations

import json

import psutil
import pytest

from webkit import MISSING, SCREENSHOTS, fill, open_panel, server_log_problems, wait_until

pytestmark = [pytest.mark.web, pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")]


def test_plan_and_forecast_are_shown_before_start(page, server, roots):
    url, proc, log_path = server
    fill(page, "#dataset-input", "Hippo10")
    page.click("#choose-dataset")
    page.wait_for_selector("#dataset-info")
    open_panel(page, "search", "#plan-forecast-button")
    fill(page, "#search-minutes", "2")              # a time budget: the forecast says how many trials fit in it
    page.click("#panel-data")                       # collapse Data: the picture shows the Search panel
    page.click("#plan-forecast-button")
    rows = wait_until(lambda: page.eval_on_selector_all(
        ".plan-row", "rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim(), r.title])"),
        300, "the plan and forecast rows")
    shown = {name: (value, why) for name, value, why in rows}
    assert page.locator("#plan-error").count() == 0, page.inner_text("#plan-error")

    # what the page shows is what the engine's child wrote: its plan.json and forecast.json
    run_dir = roots["work"] / page.evaluate("window.trame.state.get('run_name')")
    [folder] = [f for f in run_dir.iterdir() if f.name.startswith("plan-forecast-")]
    plan = json.loads((folder / "plan.json").read_text())
    forecast = json.loads((folder / "forecast.json").read_text())
    patch = plan["choices"]["patch_size"]
    assert shown["patch"] == ("×".join(map(str, patch["value"])), patch["why"])
    assert shown["batch"][0] == str(plan["choices"]["batch_size"]["value"])
    assert shown["network"][0].startswith(f"depth {plan['choices']['network']['value']['depth']},")
    assert {"target spacing", "normalisation", "epochs (plan)", "per trial", "search", "total"} <= set(shown)
    assert forecast["time_budget"] == 120 and shown["trials"][0] == f"≈ {forecast['trials']} fit in 2.0 min"
    assert forecast["trials"] >= 1 and shown["per trial"][0].startswith("≈ ")
    assert "Hippocampus" in page.inner_text("#plan-status")

    # before Start: no search ran (no search folder, no trial row, the run status untouched, Start enabled)
    assert not (run_dir / "search").exists() and page.locator(".trial-row").count() == 0
    assert page.evaluate("window.trame.state.get('run_state')") == ""
    assert page.locator("#start-search").is_enabled()
    panel = page.locator(".v-expansion-panel", has=page.locator("#panel-search"))
    panel.screenshot(path=str(SCREENSHOTS / "web-plan-forecast.png"))

    # a setting changed after the answer marks it stale; the engine's child is gone
    fill(page, "#epochs", "3")
    page.wait_for_selector("#plan-stale", state="visible")
    assert psutil.Process(proc.pid).children(recursive=True) == []
    assert server_log_problems(log_path) == []
