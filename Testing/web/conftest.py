"""Fixtures for the browser front end: a real `autoseg gui` server (subprocess, free port, killed afterwards),
a small real MSD dataset, folders outside the allowed roots, and Debian Chromium driven by Playwright."""
from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def server(roots):
    """`python -m AutoSegCore gui` on 127.0.0.1:<free port>; yields (url, Popen, log path); kills its tree."""
    import psutil

    port = _free_port()
    log_path = roots["work"].parent / "server.log"
    env = dict(os.environ, AUTOSEG_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "AutoSegCore", "gui", "--data", str(roots["data"]),
                                 "--work", str(roots["work"]), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(roots["work"].parent))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url, proc, log_path
    finally:
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
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    url, _, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(url)
    # the page is up (the server keeps one state for every tab: an earlier test may have left Data collapsed)
    pg.wait_for_selector("#panel-data")
    yield pg
    context.close()
