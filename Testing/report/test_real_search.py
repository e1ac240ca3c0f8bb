"""A report from a REAL tiny search: Hippocampus, 2 trials × 2 epochs × 2 steps, the proxy paper's 3-level proxy net."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import optuna
import pytest

from shared_data import HIPPO, make_subset


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_of_a_real_search(tmp_path):
    if not HIPPO.is_dir():
        pytest.skip(f"shared data not found at {HIPPO}")
    data = make_subset(tmp_path / "hippo8", 8)
    (tmp_path / "base.yaml").write_text("training: {batch_size: 2}\n")
    work = tmp_path / "work"
    env = {**os.environ, "AUTOSEG_THREADS": "1", "OMP_NUM_THREADS": "1"}
    search = subprocess.run(
        [sys.executable, "-m", "AutoSegCore", "search", str(data), "--space", "unet-pipeline", "--strategy", "random",
         "--proxy-net", "levels=3", "--trials", "2", "--epochs", "2", "--min-epochs", "1", "--steps-per-epoch", "2",
         "--config", str(tmp_path / "base.yaml"), "--no-final", "--device", "cpu", "--out", str(work)],
        capture_output=True, text=True, timeout=500, env=env)
    assert search.returncode == 0, search.stderr[-3000:]
    (work / "report.html").unlink(missing_ok=True)
    (work / "summary.json").unlink(missing_ok=True)

    res = subprocess.run([sys.executable, "-m", "AutoSegCore", "report", str(work)], capture_output=True, text=True,
                         timeout=200, env=env)
    assert res.returncode == 0, res.stderr
    summary = json.loads((work / "summary.json").read_text())
    html = (work / "report.html").read_text()
    settings = json.loads((work / "search.json").read_text())
    study = optuna.load_study(study_name=settings["study_name"], storage=settings["storage"])
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert summary["counts"]["COMPLETE"] == len(done) >= 1 and summary["n_trials"] == 2
    best = study.best_trial
    assert summary["best"]["number"] == best.number and summary["best"]["params"] == best.params
    assert summary["best"]["value"] == pytest.approx(best.value)
    # real per-epoch validation Dice reached the study and the report's learning curves
    assert sorted(best.intermediate_values) == [1, 2] and summary["best"]["epochs"] == 2
    assert summary["total_epochs"] == sum(len(t.user_attrs.get("history") or []) for t in study.trials)
    assert summary["best"]["fidelity"]["net"] == "levels=3"
    # the proxy net overwrites depth / channels / n_convs, so the search leaves them at the base config's values
    assert study.user_attrs["fixed_by_proxy_net"] == ["depth", "channels", "n_convs"]
    for t in study.trials:
        assert not {"depth", "channels", "n_convs"} & set(t.params)
        assert {k: t.user_attrs["full_config"]["network"][k] for k in ("depth", "channels", "n_convs")} == \
            {"depth": 4, "channels": 16, "n_convs": 2}
        assert t.user_attrs["config"]["network"]["depth"] == 3
    assert {"convergence", "curves", "slices", "per_class"} <= set(summary["plots"])
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 4
    assert any("final training" in m for m in summary["missing"])
    # "the storage opens in optuna-dashboard": the report names the command, and the real dashboard serves the study
    assert f"optuna-dashboard {settings['storage']}" in html
    _dashboard_serves(settings["storage"], settings["study_name"], study)


def _dashboard_serves(storage: str, study_name: str, study: optuna.Study) -> None:
    """Start optuna-dashboard on loopback as a user would and read the study back through its HTTP API."""
    import shutil
    import socket
    import time
    import urllib.request

    exe = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable)) or shutil.which("optuna-dashboard")
    assert exe, "optuna-dashboard is installed with the [dashboard] extra"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.loads(r.read())["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer within 60 s"
        (listed,) = [s for s in studies if s["study_name"] == study_name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{listed['study_id']}?after=0",
                                    timeout=30) as r:
            detail = json.loads(r.read())
        assert [t["number"] for t in detail["trials"]] == [t.number for t in study.trials]
        assert [t["state"] for t in detail["trials"]] == [t.state.name.capitalize() for t in study.trials]
    finally:
        server.terminate()
        server.wait(timeout=30)
