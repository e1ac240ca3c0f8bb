"""Fixtures for the browser front end: a real `autoseg gui` server (subprocess, free port, killed afterwards; its
URL with the key of that start read from what it printed), a small real MSD dataset, folders outside the allowed
roots, and Debian Chromium driven by Playwright (a new browser context = a browser session of its own)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared_data import DATA_ROOT, copy_msd_subset
from webkit import CHROMIUM, CHROMIUM_ARGS, N_CASES


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.web)


def make_subset(src: Path, dst: Path, n: int) -> list[str]:
    """An MSD folder with the first ``n`` training cases of ``src``; returns their case names."""
    copy_msd_subset(dst, n, src)
    meta = json.loads((dst / "dataset.json").read_text())
    return [Path(e["image"]).name.split(".")[0] for e in meta["training"]]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """data/Hippo10 (10 real cases), work/, and outside/ (a real dataset + a file the page must never read),
    plus data/escape -> outside (a symlink escape)."""
    base = tmp_path_factory.mktemp("web")
    data, work, outside = base / "data", base / "work", base / "outside"
    cases = make_subset(DATA_ROOT / "Task04_Hippocampus", data / "Hippo10", N_CASES)
    make_subset(DATA_ROOT / "Task04_Hippocampus", outside / "Secret", 2)
    (outside / "secret.txt").write_text("not for the page\n")
    work.mkdir()
    os.symlink(outside, data / "escape")
    return {"data": data, "work": work, "outside": outside, "cases": cases}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gui(roots, log_path: Path, *extra: str, scheme: str = "http", opener=urllib.request.urlopen):
    """Start `python -m AutoSegCore gui` on a free port; returns (the URL it printed, with this start's key, Popen)
    once the page answers there."""
    port = _free_port()
    env = dict(os.environ, AUTOSEG_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "AutoSegCore", "gui", "--data", str(roots["data"]),
                                 "--work", str(roots["work"]), "--port", str(port), *extra],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(roots["work"].parent))
    printed = re.compile(rf"AutoSegSearch page: ({scheme}://\S+:{port}/\?secret=\S+)")
    deadline = time.monotonic() + 180
    while True:
        found = printed.search(log_path.read_text(errors="replace"))
        try:
            if found:
                opener(found.group(1), timeout=2).read()
                return found.group(1), proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_tree(proc)
            raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.5)


def stop_tree(proc) -> None:
    import psutil

    tree = [proc.pid]
    try:
        tree += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    for pid in reversed(tree):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(roots):
    """`python -m AutoSegCore gui` on 127.0.0.1:<free port>; yields (URL with the key, Popen, log path); kills its
    tree."""
    log_path = roots["work"].parent / "server.log"
    url, proc = start_gui(roots, log_path)
    try:
        yield url, proc, log_path
    finally:
        stop_tree(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str, timeout: float = 60):
    """A new browser context (a browser session of its own) on the page; waits while the page is still owned by
    the session of a context just closed (the server sees its WebSocket close a moment later)."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    deadline = time.monotonic() + timeout
    while pg.goto(url).status == 409 and time.monotonic() < deadline:
        time.sleep(0.5)
    pg.wait_for_selector("#panel-data")
    return pg


@pytest.fixture
def page(browser, server):
    """A fresh browser session on the page: it owns the page, which starts fresh for it."""
    url, _, _ = server
    pg = open_page(browser, url)
    yield pg
    pg.context.close()
