"""One browser session owns the page (trame keeps one state for every client): in Chromium, a second browser
context is told the page is open elsewhere and gets no state and no WebSocket while the first is there or its run
is going, so it can neither watch nor cancel that run; it gets a fresh page once the first has left and its run
ended. Values a client writes into the page's state are checked against the server's own lists."""
from __future__ import annotations

import psutil
import pytest

from conftest import open_page
from webkit import MISSING, fill, open_panel, server_log_problems, wait_until
from wslink_client import page_key, talk, ws_url

pytestmark = [pytest.mark.web, pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")]

BUSY = "open in another browser session"


def state(page, key: str):
    return page.evaluate(f"window.trame.state.get('{key}')")


def engines(proc) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def start_long_search(page) -> None:
    fill(page, "#dataset-input", "Hippo10")
    page.click("#choose-dataset")
    page.wait_for_selector("#dataset-info")
    open_panel(page, "search", "#trials")
    fill(page, "#trials", "2")
    fill(page, "#epochs", "400")            # far longer than the test: only Cancel or a kill ends it
    open_panel(page, "run", "#start-search")
    page.click("#start-search")
    wait_until(lambda: state(page, "run_state") == "running", 60, "the run to start")


def leave(page) -> None:
    """Close a page once its views are drawn: a WebSocket cut while the server still sends a view's picture makes
    wslink log the failed send (a traceback in the server log)."""
    page.wait_for_timeout(2000)
    page.close(run_before_unload=True)
    page.context.close()


def refused(browser, url: str):
    """A new browser context on the page: the answer (status, text); the context stays open for more checks."""
    context = browser.new_context()
    pg = context.new_page()
    answer = pg.goto(url)
    return pg, answer.status, pg.inner_text("body")


def test_a_second_browser_session_cannot_see_or_cancel_the_first_ones_run(browser, server):
    url, proc, log_path = server
    first = open_page(browser, url)
    start_long_search(first)
    running = engines(proc)
    assert running

    # a second browser context, with the key: told, no app, no state; its own WebSocket (same origin, its cookie,
    # the key) is refused
    second, code, text = refused(browser, url)
    assert code == 409 and BUSY in text
    assert second.evaluate("typeof window.trame") == "undefined"
    opened = second.evaluate("""key => new Promise(done => {
        const ws = new WebSocket(location.origin.replace('http', 'ws') + '/ws?secret=' + key);
        ws.onopen = () => done('open'); ws.onerror = () => done('refused'); })""", page_key(url))
    assert opened == "refused"
    # any program with the key: the upgrade is refused (409), so no cancel can even be sent
    with pytest.raises(Exception) as err:
        talk(ws_url(url, page_key(url)), page_key(url), ("trame.state.get", []))
    assert getattr(err.value, "status", None) == 409, err.value
    assert state(first, "run_state") == "running" and all(p.is_running() for p in running)

    # the first session reloads its page: still its page, its run still shown
    first.reload()
    first.wait_for_selector("#panel-data")
    wait_until(lambda: state(first, "run_state") == "running", 30, "the run after a reload")
    assert "search" in first.inner_text("#run-status")

    # the first session leaves while its run goes: the page stays its own until that run ends
    first.context.close()
    for _ in range(3):
        assert second.reload().status == 409
    for p in engines(proc):                  # the run ends (killed like a crash): the page is released
        p.kill()
    wait_until(lambda: second.reload().status == 200, 60, "the page released when the run ended")
    second.wait_for_selector("#panel-data")
    wait_until(lambda: second.evaluate("typeof window.trame") == "object" and state(second, "data_root"), 30,
               "the page's state")
    # a fresh page: nothing of the first session (its dataset, run, log, error) is shown
    assert state(second, "dataset") is None and state(second, "run_state") == "" and state(second, "run_log") == ""
    assert state(second, "trial_rows") == [] and state(second, "error") == "" and state(second, "run_name") == ""
    leave(second)
    assert server_log_problems(log_path) == []


def test_page_values_are_checked_against_the_engine_lists(page, server, roots, tmp_path_factory):
    """A client can write any state key: a space pointing at a YAML file, an unknown strategy, proxy network or
    method, a budget that is no number — each a visible refusal naming the value, no engine started."""
    url, proc, log_path = server
    yaml_file = tmp_path_factory.mktemp("hostile") / "space.yaml"
    yaml_file.write_text("secret_key: do-not-show\n")
    fill(page, "#dataset-input", "Hippo10")
    page.click("#choose-dataset")
    page.wait_for_selector("#dataset-info")
    open_panel(page, "search", "#plan-forecast-button")
    for key, value, expected in (("space", str(yaml_file), "space"), ("strategy", "../evil", "strategy"),
                                 ("proxy_net", "levels=99", "proxy network")):
        kept = state(page, key)
        page.evaluate(f"window.trame.state.set('{key}', {value!r})")
        page.click("#plan-forecast-button")
        wait_until(lambda: page.locator("#error").count(), 30, f"the refusal of {key}")
        message = page.inner_text("#error")
        assert f"{expected} '{value}' is not one of the page's choices" in message, message
        assert "secret_key" not in message
        page.evaluate(f"window.trame.state.set('{key}', {kept!r})")
        page.click("#error button")
        page.wait_for_selector("#error", state="detached")
    page.evaluate("window.trame.state.set('proxy_budget', 'lots')")
    open_panel(page, "proxy", "#run-proxy")
    page.click("#run-proxy")
    wait_until(lambda: page.locator("#error").count(), 30, "the refusal of the budget")
    assert "proxy budget 'lots' is not a number" in page.inner_text("#error")
    page.evaluate("window.trame.state.set('proxy_budget', 30)")
    page.evaluate("window.trame.state.set('proxy_method', 'psnr')")
    page.click("#error button")
    page.click("#run-proxy")
    wait_until(lambda: page.locator("#error").count(), 30, "the refusal of the method")
    assert "proxy method 'psnr' is not one of the page's choices" in page.inner_text("#error")
    assert engines(proc) == [] and not list(roots["work"].glob("*/plan-forecast-*"))
    assert not list(roots["work"].glob("*/proxy"))
    assert server_log_problems(log_path) == []
