"""build_report and `autoseg report` on real studies; overlays from real Hippocampus cases."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from scipy import ndimage

from AutoSegCore.errors import ConfigError, StorageError
from AutoSegCore.events import EventWriter
from AutoSegCore.report import build_report
from shared_data import HIPPO, make_subset

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _copy_work(src: Path, dst: Path) -> Path:
    """A copy of a search folder whose search.json points at the copied study.db."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "search.json").read_text())
    meta["storage"] = f"sqlite:///{dst / 'study.db'}"
    (dst / "search.json").write_text(json.dumps(meta))
    for name in ("report.html", "summary.json"):
        (dst / name).unlink(missing_ok=True)
    return dst


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "AutoSegCore", "report", *args], capture_output=True, text=True,
                          timeout=120)


def _check_self_contained(html: str, min_images: int) -> list[bytes]:
    import base64

    images = [base64.b64decode(b) for b in IMG.findall(html)]
    assert len(images) >= min_images
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) > 2000 for b in images)
    text = IMG.sub("<img>", html).lower()      # base64 may spell "http" by chance
    assert "base64," not in text, "every image is a PNG data URI"
    assert "http" not in text and "//" not in text.replace("sqlite:///", ""), "no external resources"
    assert "<script" not in text and "<link" not in text and "url(" not in text
    return images


def test_report_single_objective(single_work, tmp_path):
    work = _copy_work(single_work, tmp_path / "w")
    seen = []
    ev = EventWriter(None)
    ev.listeners.append(seen.append)
    html_path, summary_path = build_report(work, events=ev)
    assert [e.get("kind") for e in seen if e["event"] == "artifact"] == ["report", "summary"]
    assert any(e["event"] == "progress" for e in seen)
    assert html_path == work / "report.html" and summary_path == work / "summary.json"
    html = html_path.read_text()
    _check_self_contained(html, 5)
    summary = json.loads(summary_path.read_text())
    for key in ("study", "counts", "best", "kendall_tau", "anova", "importance", "best_so_far", "pareto_front",
                "proxy_vs_full", "final", "missing", "plots", "storage", "predictions"):
        assert key in summary
    assert {"convergence", "curves", "tau", "slices", "importance", "per_class"} <= set(summary["plots"])
    study = optuna.load_study(study_name="single", storage=summary["storage"])
    assert summary["best"]["number"] == study.best_trial.number
    assert f"#{study.best_trial.number}" in html
    assert f"optuna-dashboard {summary['storage']}" in html
    # no final training in this folder: the report says so instead of failing
    assert summary["final"] is None and "final/final.json missing" in html
    assert "no predictions/ folder" in html
    assert not list(work.glob(".*.tmp")) and not list(work.glob(".report.html*"))


def test_report_multi_objective_has_pareto(multi_work, tmp_path):
    work = _copy_work(multi_work, tmp_path / "m")
    html_path, summary_path = build_report(work)
    html = html_path.read_text()
    _check_self_contained(html, 5)
    summary = json.loads(summary_path.read_text())
    assert "pareto" in summary["plots"] and 'id="pareto"' in html
    assert summary["directions"] == ["minimize", "minimize"] and summary["pareto_front"]


@pytest.fixture(scope="module")
def hippo3(tmp_path_factory) -> Path:
    """An MSD folder with 3 real Hippocampus cases (linked)."""
    if not HIPPO.is_dir():
        pytest.skip(f"shared data not found at {HIPPO}")
    return make_subset(tmp_path_factory.mktemp("hippo3") / "data", 3)


def test_report_with_final_model_and_overlays(single_work, hippo3, tmp_path):
    """A folder as a full search leaves it: final/final.json, predictions/ of real cases, dataset in search.json."""
    from AutoSegCore.data.dataset import load_dataset, read_case
    from AutoSegCore.data.writers import save_prediction
    from AutoSegCore.training.metrics import evaluate_pair

    work = _copy_work(single_work, tmp_path / "f")
    meta = json.loads((work / "search.json").read_text())
    meta["data"] = str(hippo3)
    (work / "search.json").write_text(json.dumps(meta))
    ds = load_dataset(hippo3, validate=False)
    metrics = []
    for case in ds.cases:   # a plausible "prediction": the ground truth with its posterior label eroded
        arr = read_case(case)
        pred = arr.label.copy()
        post = ndimage.binary_erosion(pred == 2)
        pred[(pred == 2) & ~post] = 0
        save_prediction(pred, arr.affine, ds.labels, work / "predictions", case.name)
        metrics.append(evaluate_pair(pred, arr.label, ds.labels, arr.spacing))
    study = optuna.load_study(study_name="single", storage=meta["storage"])
    top = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: -t.value)[:3]
    names = [ds.labels[c] for c in ds.foreground_labels]
    members = [{"trial": t.number, "tag": f"rank{i}", "params": t.params, "proxy_val_dice": t.value,
                "full_val_dice": float(np.mean([m["mean_dice"] for m in metrics])) - 0.01 * i,
                "val_dice_per_class": {n: float(np.mean([m["dice"][n] for m in metrics])) for n in names},
                "seconds": 12.0} for i, t in enumerate(top)]
    final = {"members": members, "largest_component": [1],
             "ensemble": {"val_dice": float(np.mean([m["mean_dice"] for m in metrics])),
                          "val_dice_per_class": {n: float(np.mean([m["dice"][n] for m in metrics])) for n in names}},
             "seconds": 36.0}
    (work / "final").mkdir()
    (work / "final" / "final.json").write_text(json.dumps(final))

    html_path, summary_path = build_report(work)
    html = html_path.read_text()
    summary = json.loads(summary_path.read_text())
    _check_self_contained(html, 8)
    assert summary["predictions"]["cases"] == [c.name for c in ds.cases]
    assert {"overlays", "per_class", "proxy_vs_full"} <= set(summary["plots"])
    assert summary["final"]["ensemble"]["val_dice_per_class"]["Posterior"] < 1.0
    assert summary["proxy_vs_full"]["n"] == 3 and summary["proxy_vs_full"]["pearson_r"] is not None
    assert "final training" not in " ".join(summary["missing"])
    for c in ds.cases:
        assert f"prediction overlay {c.name}" in html


def test_cli_builds_report_and_prints_paths(single_work, tmp_path):
    work = _copy_work(single_work, tmp_path / "c")
    res = _cli(str(work), "--events", str(tmp_path / "events.jsonl"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(work / "report.html"), str(work / "summary.json")]
    assert (work / "report.html").is_file() and (work / "summary.json").is_file()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["report"] == str(work / "report.html")
    assert {e.get("kind") for e in events if e["event"] == "artifact"} == {"report", "summary"}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_cli_corrupt_study_exits_2_and_writes_nothing(single_work, tmp_path, damage):
    work = _copy_work(single_work, tmp_path / damage)
    db = work / "study.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 100)
    else:   # a real SQLite header followed by damaged pages
        data = db.read_bytes()
        db.write_bytes(data[:100] + bytes(len(data) - 100))
    res = _cli(str(work))
    assert res.returncode == 2
    assert "error" in res.stderr and "hint:" in res.stderr and "Traceback" not in res.stderr
    assert "study" in res.stderr
    assert not (work / "report.html").exists() and not (work / "summary.json").exists()
    assert not list(work.glob(".report*")) and not list(work.glob(".summary*"))


def test_cli_folder_without_search_json(tmp_path):
    res = _cli(str(tmp_path))
    assert res.returncode == 2 and "search.json" in res.stderr and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_study_or_database_is_a_storage_error(single_work, tmp_path):
    work = _copy_work(single_work, tmp_path / "x")
    meta = json.loads((work / "search.json").read_text())
    (work / "search.json").write_text(json.dumps({**meta, "study_name": "nope"}))
    with pytest.raises(StorageError, match="no study named 'nope'"):
        build_report(work)
    (work / "search.json").write_text(json.dumps({**meta, "storage": f"sqlite:///{work / 'gone.db'}"}))
    with pytest.raises(StorageError, match="gone.db"):
        build_report(work)
    assert not (work / "gone.db").exists(), "reading must not create an empty database"
    (work / "search.json").write_text("{not json")
    with pytest.raises(ConfigError, match="search.json"):
        build_report(work)
    assert not (work / "report.html").exists()


def test_a_moved_or_copied_search_folder_reads_its_own_study(single_work, tmp_path):
    """search.json's absolute study.db URL is the folder's own when the search used no --storage: a moved folder
    still reports, and a copy without its study.db is an error — not a report of the original's study."""
    gone = tmp_path / "old-place" / "study"                       # where the search ran; since moved away
    moved = tmp_path / "moved"
    shutil.copytree(single_work, moved)
    meta = json.loads((moved / "search.json").read_text())
    for flags in ({"storage_is_default": True}, {"out": str(gone)}):  # current search.json, and one from before
        (moved / "search.json").write_text(json.dumps({**meta, **flags, "storage": f"sqlite:///{gone / 'study.db'}"}))
        _, summary = build_report(moved)
        trials = len(optuna.load_study(study_name=meta["study_name"], storage=f"sqlite:///{moved / 'study.db'}").trials)
        assert json.loads(summary.read_text())["n_trials"] == trials
    copied = tmp_path / "copied"
    shutil.copytree(moved, copied)
    (copied / "study.db").unlink()
    (copied / "search.json").write_text(json.dumps({**meta, "storage_is_default": True,
                                                    "storage": f"sqlite:///{moved / 'study.db'}"}))
    with pytest.raises(StorageError, match=str(copied / "study.db")):
        build_report(copied)
    # an explicit --storage is kept as it is
    (copied / "search.json").write_text(json.dumps({**meta, "storage_is_default": False,
                                                    "storage": f"sqlite:///{moved / 'study.db'}"}))
    build_report(copied)
    assert (copied / "report.html").is_file()


def test_report_of_empty_and_pruned_studies(tmp_path):
    """A study that has not finished a trial yet, and one whose pruner stopped trials early, still report."""
    from studies import make_objective, write_search_json

    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    url = f"sqlite:///{empty_dir / 'study.db'}"
    empty = optuna.create_study(storage=url, study_name="empty", direction="maximize")
    write_search_json(empty_dir, empty, url)
    html_path, summary_path = build_report(empty_dir)
    summary = json.loads(summary_path.read_text())
    assert summary["n_trials"] == 0 and summary["best"] is None and summary["plots"] == []
    assert "no completed trial yet" in html_path.read_text()

    pruned_dir = tmp_path / "pruned"
    pruned_dir.mkdir()
    url = f"sqlite:///{pruned_dir / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="pruned", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=2),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    objective = make_objective(epochs=6, noise=0.0, seed=2)

    def pruned_objective(trial):
        value = objective(trial)          # reports every epoch; stop where the pruner says so
        for epoch in sorted(trial.storage.get_trial(trial._trial_id).intermediate_values):
            if epoch >= 2 and trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(pruned_objective, n_trials=14)
    write_search_json(pruned_dir, study, url)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.PRUNED in states
    html_path, summary_path = build_report(pruned_dir)
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["PRUNED"] == sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert {p["state"] for p in summary["best_so_far"]["points"]} >= {"PRUNED", "COMPLETE"}
    assert all(r["n"] == summary["counts"]["COMPLETE"] for r in summary["kendall_tau"])
    assert "curves" in summary["plots"]


def test_cli_unreachable_server_exits_2(single_work, tmp_path):
    work = _copy_work(single_work, tmp_path / "pg")
    meta = json.loads((work / "search.json").read_text())
    # port 1 on loopback: nothing listens there, the connection is refused at once
    meta["storage"] = "postgresql+psycopg://autoseg:secret@127.0.0.1:1/optuna"
    (work / "search.json").write_text(json.dumps(meta))
    res = _cli(str(work))
    assert res.returncode == 2 and "cannot open study storage" in res.stderr and "Traceback" not in res.stderr
    assert "secret" not in res.stderr, "passwords are redacted"
    assert not (work / "report.html").exists()
