"""Held-out Dice of the search vs the planned recipe vs nnU-Net v2, at equal wall-clock and threads (issue 32).

Three arms, one per sitting (each needs the cores to itself for ``--minutes``), all on the same pool (a seeded
split holds ``--holdout`` of the dataset's cases out; no arm ever sees them) and scored the same way: per-case and
per-class Dice of each arm's predictions in the cases' original geometry (``plan_accuracy.score``: the engine's
``evaluate_pair``). Every arm is saved to ``<results>/budget_accuracy_<dataset>_<arm>.json`` as it finishes.

* ``planned``: ``autoseg train POOL --time {minutes}m`` — the dataset's plan, no config, as a user runs it;
* ``search``:  ``autoseg search POOL --time S --final-time F`` with every other option at its default (space,
  strategy, proxies, ``--jobs 1``; ``--jobs`` changes it). ``--time`` bounds only the search's trials and
  ``--final-time`` the final training, so the arm's minutes are split as the CLI's own defaults split them
  (``autoseg search`` without ``--time`` searches 1 h on a CPU and the final training takes the plan's 20 min:
  3 : 1, i.e. 22.5 + 7.5 min of a 30-minute arm; ``--search-share`` overrides). The model is its ``best/``;
* ``nnunet``: nnU-Net v2 (pinned in the ``bench`` extra: ``nnunetv2==2.8.1``) in its own venv
  (``--nnunet-python``): the pool written as an nnU-Net raw dataset, ``nnUNetv2_plan_and_preprocess -c
  3d_fullres`` (its own plan), then ``nnUNetv2_train … all -device cpu`` with nnU-Net's default trainer whose
  epoch count and iterations per epoch come from the environment (``nnUNetTrainer_AutoSegBudget``, a small
  subclass the bench writes into the venv's trainer folder): a first run of one short epoch (10 iterations)
  measures the iteration time and the run's start-up, then the schedule is fitted to what is left of the budget
  (``fit_nnunet_schedule``): nnU-Net's 250 iterations per epoch while at least 10 such epochs fit, else the
  iterations that make 10 epochs fit (on 2 CPU cores one 250-iteration epoch took 27 min on Hippocampus and more
  than 30 on Prostate_PROMISE12); the training continues from the first epoch (``--c``: the poly schedule then
  ends on the fitted count). nnU-Net's final validation on fold
  ``all`` (its own training cases) is skipped: it costs time and nothing the prediction uses. Conversion,
  planning and preprocessing count within the arm's minutes. ``nnUNetv2_predict`` (its defaults: mirroring
  TTA, step 0.5) predicts the held-out images, scored by our evaluation.

Threads: every arm runs with ``--threads`` (``OMP/MKL/OPENBLAS_NUM_THREADS``, ``AUTOSEG_THREADS``, nnU-Net's
``nnUNet_n_proc_DA`` / ``nnUNet_def_n_proc`` and torch's threads inside its trainer); with fewer threads than
cores the arm is also pinned to that many cores. Prediction is timed apart from the budget in every arm.

    python bench/budget_accuracy.py --data ../shared/data/Task04_Hippocampus --arm planned    # 30 min each
    python bench/budget_accuracy.py --data ../shared/data/Task04_Hippocampus --arm search
    python bench/budget_accuracy.py --data ../shared/data/Task04_Hippocampus --arm nnunet
    python bench/budget_accuracy.py --data ../shared/data/Task04_Hippocampus --arm compare
    # a quick end-to-end check of the plumbing (minutes, a subset, results kept apart):
    python bench/budget_accuracy.py --data ../shared/data/Task04_Hippocampus --arm planned --minutes 2 \\
        --pool-cases 20 --holdout-cases 5 --results /tmp/ba_smoke       # … search, nnunet (--nnunet-iterations 10)

Each arm's file holds the per-case and per-class Dice, the wall-clock split (planning/preprocessing, search,
final training, other, and prediction apart), the forecast printed at the start against the actual, the commands
and the machine's load before and after. ``compare`` pairs the saved arms per case (search − planned,
search − nnunet, planned − nnunet: mean with a 95 % t interval), prints the time split and forecast vs actual,
checks the issue's verdicts (PASS/FAIL each; exit 1 on any FAIL) and writes
``<results>/budget_accuracy_<dataset>_compare.txt``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from plan_accuracy import (AUTOSEG, REPO, paired_difference, plan_summary, pool_dataset, run,  # noqa: E402
                           score, split)

RESULTS = REPO / "bench" / "results"
ARMS = ("planned", "search", "nnunet")
# (a, b): a − b per case; the verdicts are read off these
PAIRS = (("search", "planned"), ("search", "nnunet"), ("planned", "nnunet"))
DEFAULT_NNUNET_PY = "/work/nnunet-venv/bin/python"
NNUNET_ID = 501
NNUNET_TRAINER = "nnUNetTrainer_AutoSegBudget"
NNUNET_MAX_EPOCHS = 1000                 # nnU-Net's default training length: never more
NNUNET_ITERATIONS = 250                  # nnU-Net's training iterations per epoch
NNUNET_PROBE_ITERATIONS = 10             # the first run's one epoch: enough steps to time one, a sliver of the budget
# fewer of nnU-Net's epochs than this fit the budget: its epochs get fewer iterations instead, so that its poly
# schedule still decays over the budget (on 2 CPU cores one 250-iteration epoch took 27 min on Hippocampus and
# more than the whole 30 minutes on Prostate_PROMISE12)
NNUNET_MIN_EPOCHS = 10
SEARCH_LOWER_BOUND = -0.005              # search − planned, paired 95 % lower bound
PROSTATE_SEARCH_TARGET = 0.85
GPU_SEARCH_TARGET, GPU_MARGIN = 0.890, 0.01

# console scripts of nnunetv2 2.8.1, called through `python -c` so that only the venv's python is needed
NNUNET_ENTRY = {
    "nnUNetv2_plan_and_preprocess": "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:"
                                    "plan_and_preprocess_entry",
    "nnUNetv2_train": "nnunetv2.run.run_training:run_training_entry",
    "nnUNetv2_predict": "nnunetv2.inference.predict_from_raw_data:predict_entry_point",
}

TRAINER_SOURCE = '''\
"""Written by AutoSegCore's bench/budget_accuracy.py: nnU-Net's default trainer with the training length taken
from the environment, so that a wall-clock budget can be fitted from a measured epoch time.

AUTOSEG_BENCH_NNUNET_EPOCHS      number of epochs (default: nnU-Net's 1000)
AUTOSEG_BENCH_NNUNET_ITERATIONS  training iterations per epoch (default: nnU-Net's 250; validation: a fifth)
AUTOSEG_BENCH_THREADS            torch threads on the CPU (nnUNetv2_train sets every core's)
AUTOSEG_BENCH_SKIP_VALIDATION=1  no final validation (fold 'all' validates on its own training cases)

Every epoch also logs its steady-state length ("AutoSegBudget: steady epoch … s"): the first training and the
first validation step each count as one step at the mean pace of the epoch's other steps, so the wait for the
data loader's worker processes (a run's start-up, paid once per run) is left out.
"""
import os
import time

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_AutoSegBudget(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("AUTOSEG_BENCH_NNUNET_EPOCHS", self.num_epochs))
        iterations = os.environ.get("AUTOSEG_BENCH_NNUNET_ITERATIONS")
        if iterations:
            self.num_iterations_per_epoch = int(iterations)
            self.num_val_iterations_per_epoch = max(1, int(iterations) // 5)
        threads = os.environ.get("AUTOSEG_BENCH_THREADS")
        if threads and self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        self._autoseg_marks = {}

    def on_epoch_start(self):
        self._autoseg_marks = {"start": time.time(), "train": [], "val": []}
        super().on_epoch_start()

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        self._autoseg_marks["train"].append(time.time())
        return out

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self._autoseg_marks["val_start"] = time.time()

    def validation_step(self, batch: dict) -> dict:
        out = super().validation_step(batch)
        self._autoseg_marks["val"].append(time.time())
        return out

    def on_epoch_end(self):
        m, end = self._autoseg_marks, time.time()
        if m.get("train"):
            tr = np.diff([m["start"]] + m["train"])
            va = np.diff([m.get("val_start", m["train"][-1])] + m["val"])
            pace = lambda d: float(np.mean(d[1:])) if len(d) > 1 else float(d[0])  # noqa: E731
            steady = (pace(tr) * len(tr) + (m.get("val_start", m["train"][-1]) - m["train"][-1])
                      + (pace(va) * len(va) if len(va) else 0.0) + (end - (m["val"] or m["train"])[-1]))
            self.print_to_log_file(f"AutoSegBudget: steady epoch {steady:.2f} s (this epoch {end - m['start']:.2f} s;"
                                   f" first training step {tr[0]:.2f} s)")
        super().on_epoch_end()

    def perform_actual_validation(self, save_probabilities: bool = False):
        if os.environ.get("AUTOSEG_BENCH_SKIP_VALIDATION") == "1":
            self.print_to_log_file("final validation skipped (AUTOSEG_BENCH_SKIP_VALIDATION=1)")
            return
        super().perform_actual_validation(save_probabilities)
'''


# ------------------------------------------------------------------------------------------------- settings
def search_share(device: str = "cpu") -> float:
    """The share of an arm's minutes the search arm gives ``--time`` (the rest is ``--final-time``), as the CLI's
    defaults split them: its default search budget against the plan's default training budget."""
    from AutoSegCore.planning.planner import DEFAULT_BUDGET
    from AutoSegCore.search.budget import DEFAULT_SEARCH_SECONDS

    kind = "cuda" if device.startswith("cuda") else "cpu"
    return DEFAULT_SEARCH_SECONDS[kind] / (DEFAULT_SEARCH_SECONDS[kind] + DEFAULT_BUDGET[kind])


def minutes_text(minutes: float) -> str:
    """A duration as the CLI reads it ('30m', '22.5m')."""
    return f"{round(minutes, 4):g}m"


def thread_env(threads: int, device: str = "cpu") -> dict[str, str]:
    """The environment every arm runs in: the same thread count for every pool that reads one."""
    t = str(int(threads))
    env = {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "NUMEXPR_NUM_THREADS": t,
           "AUTOSEG_THREADS": t, "AUTOSEG_BENCH_THREADS": t, "nnUNet_n_proc_DA": t, "nnUNet_def_n_proc": t,
           "nnUNet_compile": "f", "PYTHONUTF8": "1"}
    if not device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def arm_command(arm: str, pool: Path, out: Path, events: Path, minutes: float, *, share: float, jobs: int = 1,
                device: str = "cpu") -> list:
    """The ``autoseg`` command line of one of our arms (``planned`` or ``search``), as a user types it."""
    dev = [] if device == "cpu" else ["--device", device]
    if arm == "planned":
        return AUTOSEG + ["train", pool, "--out", out, "--time", minutes_text(minutes), *dev, "--events", events]
    if arm == "search":
        cmd = AUTOSEG + ["search", pool, "--out", out, "--time", minutes_text(minutes * share),
                         "--final-time", minutes_text(minutes * (1 - share))]
        if jobs != 1:
            cmd += ["--jobs", str(jobs)]
        return cmd + dev + ["--events", events]
    raise ValueError(arm)


def subset(names: list[str], n: int | None, seed: int) -> list[str]:
    """``n`` of ``names`` drawn with ``seed`` (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= len(names):
        return list(names)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(names), size=n, replace=False).tolist())


# --------------------------------------------------------------------------------------------- nnU-Net helpers
def fit_nnunet_schedule(remaining_s: float, first_run_s: float, first_epoch_s: float, first_iterations: int,
                        iterations: int | None = None, max_epochs: int = NNUNET_MAX_EPOCHS) -> dict:
    """nnU-Net's iterations per epoch and epochs in all, given what is left of the budget after its first run.

    The first run trained one epoch of ``first_iterations`` in ``first_run_s`` seconds of wall-clock, of which
    ``first_epoch_s`` the epoch itself (the steady-state epoch the budget trainer logs; validation runs a fifth of
    the iterations, so the time scales with the iterations); the rest is the run's start-up (imports, unpacking,
    the wait for the data loader's worker processes, the final checkpoint), which the continued run pays again.
    Epochs keep nnU-Net's ``NNUNET_ITERATIONS`` while at least ``NNUNET_MIN_EPOCHS`` of them fit, else get the
    iterations that make ``NNUNET_MIN_EPOCHS`` fit (never fewer than the first run's); ``iterations`` fixes them
    (a smoke run).  It trains ``epochs − 1`` more epochs; none when not even one fits (the first run's model is
    then the arm's)."""
    overhead = max(0.0, first_run_s - first_epoch_s)
    per_iteration = first_epoch_s / max(1, first_iterations)
    work = max(0.0, remaining_s - overhead)
    if iterations is None:
        iterations = NNUNET_ITERATIONS
        if work < NNUNET_MIN_EPOCHS * NNUNET_ITERATIONS * per_iteration:
            iterations = max(first_iterations, int(work / (NNUNET_MIN_EPOCHS * per_iteration)))
    epoch_s = per_iteration * iterations
    more = int(work // epoch_s) if epoch_s > 0 else 0
    more = max(0, min(more, max_epochs - 1))
    return {"epochs": 1 + more, "more": more, "iterations": int(iterations), "iteration_s": per_iteration,
            "overhead_s": overhead, "epoch_s": epoch_s, "remaining_s": remaining_s,
            "forecast_s": overhead + more * epoch_s if more else 0.0}


def nnunet_epoch_seconds(log_text: str, steady: bool = False) -> list[float]:
    """nnU-Net's own per-epoch wall-clock ('Epoch time: 12.34 s' lines), or with ``steady`` the budget trainer's
    steady-state epochs ('AutoSegBudget: steady epoch 11.02 s': without the wait for the data loader's workers)."""
    pattern = r"AutoSegBudget: steady epoch\s*([0-9.]+)\s*s" if steady else r"Epoch time:\s*([0-9.]+)\s*s"
    return [float(x) for x in re.findall(pattern, log_text)]


def nnunet_cmd(py: str, script: str, args: list) -> list:
    mod, fn = NNUNET_ENTRY[script].split(":")
    code = f"import sys; from {mod} import {fn} as f; sys.argv[0] = {script!r}; sys.exit(f())"
    return [py, "-c", code, *map(str, args)]


def nnunet_train_args(config: str, fold: str, device: str, *, resume: bool) -> list:
    return [NNUNET_ID, config, fold, "-tr", NNUNET_TRAINER, "-device", "cuda" if device.startswith("cuda") else
            "cpu"] + (["--c"] if resume else [])


def nnunet_predict_args(inp: Path, out: Path, config: str, fold: str, device: str, threads: int) -> list:
    return ["-i", inp, "-o", out, "-d", NNUNET_ID, "-c", config, "-f", fold, "-tr", NNUNET_TRAINER,
            "-device", "cuda" if device.startswith("cuda") else "cpu", "-npp", threads, "-nps", threads,
            "--disable_progress_bar"]


def install_trainer(py: str) -> Path:
    """Write ``nnUNetTrainer_AutoSegBudget`` into the nnU-Net venv's trainer folder (where nnU-Net looks up ``-tr``
    names); left alone when already identical.

    It goes next to ``nnUNetTrainer.py``, not into a subfolder: nnU-Net's look-up imports that folder's modules
    first and then every subpackage in name order, and ``primus`` (before ``variants``) imports timm →
    torchvision, which fails with a CPU-only torch (``pip install nnunetv2`` brings PyPI's CUDA torchvision:
    "operator torchvision::nms does not exist")."""
    out = subprocess.run([py, "-c", "import os, nnunetv2.training.nnUNetTrainer as m; "
                                    "print(os.path.dirname(m.__file__))"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode:
        raise SystemExit(f"cannot use nnU-Net from {py}:\n{out.stderr[-2000:]}\n"
                         "install it (bench/nnunet_plans.py): python3.11 -m venv /work/nnunet-venv; "
                         "/work/nnunet-venv/bin/pip install torch==2.13.0; "
                         "/work/nnunet-venv/bin/pip install nnunetv2==2.8.1")
    path = Path(out.stdout.strip().splitlines()[-1]) / f"{NNUNET_TRAINER}.py"
    if not path.is_file() or path.read_text() != TRAINER_SOURCE:
        path.write_text(TRAINER_SOURCE)
    return path


# --------------------------------------------------------------------------------------------------- helpers
def machine() -> dict:
    return {"machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "load": list(os.getloadavg())}


def run_logged(cmd: list, log: Path) -> tuple[float, str]:
    """``plan_accuracy.run`` (raises on failure) and what the command wrote to ``log``."""
    start = log.stat().st_size if log.exists() else 0
    seconds = run(cmd, log)
    with open(log, "rb") as fh:
        fh.seek(start)
        return seconds, fh.read().decode("utf-8", "replace")


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


def model_summary(model: Path) -> str:
    """Patch, batch, network and epochs of a trained model folder (or of an ensemble's members)."""
    paths = [model / "model.json"] if (model / "model.json").is_file() else sorted(model.glob("*/model.json"))
    parts = []
    for p in paths:
        m = json.loads(p.read_text())
        c = m.get("config", {})
        t, n, pre = c.get("training", {}), c.get("network", {}), c.get("preprocessing", {})
        parts.append(f"patch {'×'.join(map(str, t.get('patch_size') or m.get('patch_size') or []))} batch "
                     f"{t.get('batch_size')}, depth {n.get('depth')} × {n.get('channels')} ch "
                     f"({m.get('num_params', 0) / 1e6:.2f} M), spacing {pre.get('target_spacing') or 'own'}, "
                     f"{m.get('epochs')} epochs")
    return "; ".join(parts) or "–"


def split_planned(t0: float, end: float, events: list[dict]) -> dict:
    """Where ``autoseg train``'s wall-clock went, from its events: everything before the first epoch started
    (start-up, fingerprint, plan and its probes, preprocessing), the epochs, and what follows them (the
    largest-component decision, saving)."""
    epochs = [e for e in events if e["event"] == "epoch"]
    if not epochs:
        return {"planning_preprocessing": end - t0, "search": 0.0, "final_training": 0.0, "other": 0.0}
    start = epochs[0]["time"] - float(epochs[0].get("seconds") or 0.0)
    return {"planning_preprocessing": start - t0, "search": 0.0, "final_training": epochs[-1]["time"] - start,
            "other": end - epochs[-1]["time"]}


def split_search(t0: float, end: float, events: list[dict], forecast: dict) -> dict:
    """Where ``autoseg search``'s wall-clock went: set-up until its forecast (start-up, fingerprint, plan, the
    forecast's probe), the trials and the final training as the search measured them (forecast.json
    ``actual``), and the rest (report, bookkeeping)."""
    actual = forecast.get("actual") or {}
    marks = [e["time"] for e in events if e["event"] in ("forecast", "study_started")]
    setup = (min(marks) - t0) if marks else 0.0
    search = float(actual.get("search_seconds") or 0.0)
    final = float(actual.get("final_seconds") or 0.0)
    return {"planning_preprocessing": setup, "search": search, "final_training": final,
            "other": max(0.0, (end - t0) - setup - search - final)}


def planned_forecast(plan: dict) -> dict:
    """What ``autoseg train`` printed before training: the budget and the plan's epoch estimate."""
    why = ((plan.get("choices") or {}).get("epochs") or {}).get("why", "")
    m = re.search(r"≈\s*(\d+) with validation", why)
    return {"training_seconds": float(plan.get("budget_seconds") or 0.0), "epochs": int(m.group(1)) if m else None,
            "text": why}


# ------------------------------------------------------------------------------------------------------ arms
def run_ours(arm: str, args, pool_dir: Path, holdout: list[str], src: Path, work: Path) -> dict:
    model_dir, pred, log, events = (work / f"{arm}_model", work / f"{arm}_pred", work / f"{arm}.log",
                                    work / f"{arm}_events.jsonl")
    for p in (model_dir, pred):
        shutil.rmtree(p, ignore_errors=True)
    for p in (log, events):
        p.unlink(missing_ok=True)
    share = args.search_share if args.search_share is not None else search_share(args.device)
    cmd = arm_command(arm, pool_dir, model_dir, events, args.minutes, share=share, jobs=args.jobs,
                      device=args.device)
    print(f"[budget_accuracy] {arm}: {' '.join(map(str, cmd))}  (log {log})", flush=True)
    t0 = time.time()
    seconds = run(cmd, log)
    end = time.time()
    ev = read_events(events)
    from AutoSegCore.search.search_dir import PLAN_FILE, SearchDir

    folder = SearchDir(model_dir)
    model = model_dir if arm == "planned" else folder.best
    if not (model / "model.json").is_file() and not list(model.glob("*/model.json")):
        raise SystemExit(f"{arm}: no model in {model} — see {log}")
    from AutoSegCore.data.dataset import load_dataset

    ds = load_dataset(src)
    images = [path for n in holdout for path in ds.case(n).images]       # a case's channel files, any layout
    predict_cmd = AUTOSEG + ["predict", model, *images, "--out", pred] + (
        [] if args.device == "cpu" else ["--device", args.device])
    predict_seconds = run(predict_cmd, log)
    shown = [c for c in predict_cmd if c not in images]
    shown.insert(shown.index(model) + 1, f"<{len(holdout)} held-out cases' images>")
    rec = {"commands": [" ".join(map(str, cmd)), " ".join(map(str, shown))],
           "wall_seconds": seconds, "predict_seconds": predict_seconds, "model": model_summary(model)}
    if arm == "planned":
        plan = json.loads((model_dir / PLAN_FILE).read_text())
        history = json.loads((model_dir / "history.json").read_text())
        rec["time"] = split_planned(t0, end, ev)
        rec["forecast"] = planned_forecast(plan)
        rec["actual"] = {"training_seconds": rec["time"]["final_training"], "epochs": len(history),
                         "wall_seconds": seconds}
        rec["details"] = {"plan_summary": plan_summary(model_dir), "history": history}
    else:
        forecast = json.loads(folder.forecast.read_text()) if folder.forecast.is_file() else {}
        summary = json.loads(folder.summary.read_text()) if folder.summary.is_file() else {}
        rec["time"] = split_search(t0, end, ev, forecast)
        rec["forecast"] = {k: forecast.get(k) for k in ("text", "search_seconds", "final_seconds", "total_seconds",
                                                         "trial_seconds", "trials", "fitted")}
        rec["forecast"]["final_winner_seconds"] = (forecast.get("final_winner") or {}).get("seconds")
        rec["actual"] = {**(forecast.get("actual") or {}), "wall_seconds": seconds}
        final = summary.get("final") or {}
        rec["details"] = {"search_share": share, "counts": summary.get("counts"), "best": summary.get("best"),
                          "planned_recipe_stood_in": any(m.get("tag") == "planned" for m in final.get("members", [])),
                          "no_signal": summary.get("no_signal"),
                          "final_members": [{k: m.get(k) for k in ("trial", "tag", "full_val_dice", "seconds",
                                                                   "started_from")}
                                            for m in final.get("members", [])],
                          "final_replanned": (json.loads(folder.final_plan.read_text())["choices"]
                                              if folder.final_plan.is_file() else None),
                          "space": summary.get("space"), "strategy": summary.get("strategy"),
                          "proxy_data": summary.get("proxy_data"), "proxy_net": summary.get("proxy_net")}
    rec["score"] = score(pred, src, holdout, None)
    return rec


def run_nnunet(args, pool_dir: Path, holdout: list[str], src: Path, work: Path) -> dict:
    py = args.nnunet_python
    trainer_file = install_trainer(py)
    nn = work / "nnunet"
    shutil.rmtree(nn, ignore_errors=True)
    log = work / "nnunet.log"
    log.unlink(missing_ok=True)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (nn / k).mkdir(parents=True)
        os.environ[k] = str(nn / k)
    os.environ["AUTOSEG_BENCH_SKIP_VALIDATION"] = "1"
    first_iterations = args.nnunet_iterations or NNUNET_PROBE_ITERATIONS
    name = re.sub(r"[^A-Za-z0-9]", "", src.name)
    raw = nn / "nnUNet_raw" / f"Dataset{NNUNET_ID:03d}_{name}"
    budget = args.minutes * 60.0
    commands = []
    t0 = time.time()
    print(f"[budget_accuracy] nnunet: {py}, trainer {trainer_file}  (log {log})", flush=True)
    # 1. the pool as an nnU-Net raw dataset (nnunet_plans' writer, inside nnU-Net's python)
    cmd = [py, HERE / "nnunet_plans.py", "--_write-raw", pool_dir, raw]
    convert_s = run(cmd, log)
    commands.append("bench/nnunet_plans.py --_write-raw POOL RAW")
    # 2. nnU-Net's fingerprint, plan and 3d_fullres preprocessing
    pp = nnunet_cmd(py, "nnUNetv2_plan_and_preprocess", ["-d", NNUNET_ID, "-c", args.nnunet_config, "-np",
                                                          args.threads, "-npfp", args.threads,
                                                          "--verify_dataset_integrity", "--no_pbar"])
    plan_s = run(pp, log)
    commands.append(f"nnUNetv2_plan_and_preprocess -d {NNUNET_ID} -c {args.nnunet_config} -np {args.threads} "
                    f"-npfp {args.threads} --verify_dataset_integrity --no_pbar")
    # 3. one short epoch: the iteration time and the run's start-up
    os.environ["AUTOSEG_BENCH_NNUNET_EPOCHS"] = "1"
    os.environ["AUTOSEG_BENCH_NNUNET_ITERATIONS"] = str(first_iterations)
    train_args = nnunet_train_args(args.nnunet_config, args.nnunet_fold, args.device, resume=False)
    first_s, first_log = run_logged(nnunet_cmd(py, "nnUNetv2_train", train_args), log)
    commands.append(f"AUTOSEG_BENCH_NNUNET_EPOCHS=1 AUTOSEG_BENCH_NNUNET_ITERATIONS={first_iterations} "
                    "nnUNetv2_train " + " ".join(map(str, train_args)))
    epoch_times = nnunet_epoch_seconds(first_log)
    steady = nnunet_epoch_seconds(first_log, steady=True) or list(epoch_times)
    if not epoch_times:
        raise SystemExit(f"nnunet: no 'Epoch time' in the first run's output — see {log}")
    remaining = budget - (time.time() - t0)
    fit = fit_nnunet_schedule(remaining, first_s, steady[-1], first_iterations, args.nnunet_iterations)
    print(f"[budget_accuracy] nnunet: first epoch of {first_iterations} iterations {epoch_times[-1]:.1f} s (steady "
          f"{steady[-1]:.1f} s), run start-up {fit['overhead_s']:.1f} s, {remaining:.0f} s left → "
          f"{fit['epochs']} epochs × {fit['iterations']} iterations", flush=True)
    # 4. the rest of the fitted epochs, continued from the first
    more_s, more_log = 0.0, ""
    if fit["more"]:
        os.environ["AUTOSEG_BENCH_NNUNET_EPOCHS"] = str(fit["epochs"])
        os.environ["AUTOSEG_BENCH_NNUNET_ITERATIONS"] = str(fit["iterations"])
        train_args = nnunet_train_args(args.nnunet_config, args.nnunet_fold, args.device, resume=True)
        more_s, more_log = run_logged(nnunet_cmd(py, "nnUNetv2_train", train_args), log)
        commands.append(f"AUTOSEG_BENCH_NNUNET_EPOCHS={fit['epochs']} AUTOSEG_BENCH_NNUNET_ITERATIONS="
                        f"{fit['iterations']} nnUNetv2_train " + " ".join(map(str, train_args)))
        epoch_times += nnunet_epoch_seconds(more_log)
        steady += nnunet_epoch_seconds(more_log, steady=True)
    wall = time.time() - t0
    # 5. prediction of the held-out images (timed apart, as in our arms)
    tp = time.time()
    hold_msd = pool_dataset(src, work / "nnunet_holdout_msd", holdout)
    hold_raw = nn / "holdout_raw"
    run([py, HERE / "nnunet_plans.py", "--_write-raw", hold_msd, hold_raw], log)
    pred = work / "nnunet_pred"
    shutil.rmtree(pred, ignore_errors=True)
    predict_args = nnunet_predict_args(hold_raw / "imagesTr", pred, args.nnunet_config, args.nnunet_fold,
                                       args.device, args.threads)
    run(nnunet_cmd(py, "nnUNetv2_predict", predict_args), log)
    predict_s = time.time() - tp
    commands.append("nnUNetv2_predict " + " ".join(map(str, predict_args)))
    pre = nn / "nnUNet_preprocessed" / raw.name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    cfg = plans["configurations"][args.nnunet_config]
    version = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('nnunetv2'), "
                                        "m.version('torch'))"], stdout=subprocess.PIPE, text=True).stdout.split()
    iterations = (f"{fit['iterations']} iterations (the first: {first_iterations})" if fit["more"] else
                  f"{first_iterations} iterations")
    rec = {"commands": commands, "wall_seconds": wall, "predict_seconds": predict_s,
           "model": (f"nnU-Net {args.nnunet_config} patch {'×'.join(map(str, cfg['patch_size']))} (z,y,x) batch "
                     f"{cfg['batch_size']}, {cfg['architecture']['arch_kwargs']['n_stages']} stages, "
                     f"{fit['epochs']} epochs × {iterations}"),
           "time": {"planning_preprocessing": convert_s + plan_s, "search": 0.0, "final_training": first_s + more_s,
                    "other": max(0.0, wall - convert_s - plan_s - first_s - more_s)},
           "forecast": {"text": f"{fit['epochs']} epochs: {fit['more']} more of {fit['iterations']} iterations, "
                                f"≈ {fit['epoch_s']:.1f} s each, after the "
                                f"first + {fit['overhead_s']:.0f} s start-up ≈ {fit['forecast_s']:.0f} s of the "
                                f"{remaining:.0f} s left",
                        "training_seconds": first_s + fit["forecast_s"], "epochs": fit["epochs"],
                        "continued_seconds": fit["forecast_s"]},
           "actual": {"training_seconds": first_s + more_s, "epochs": fit["epochs"], "continued_seconds": more_s,
                      "wall_seconds": wall, "epoch_seconds": epoch_times,
                      "steady_epoch_seconds": steady},
           "details": {"nnunetv2": version[0] if version else None, "torch": version[1] if len(version) > 1 else None,
                       "trainer": NNUNET_TRAINER, "configuration": args.nnunet_config, "fold": args.nnunet_fold,
                       "iterations_per_epoch": fit["iterations"] if fit["more"] else first_iterations,
                       "first_run_iterations": first_iterations, "fit": fit, "convert_seconds": convert_s,
                       "plan_preprocess_seconds": plan_s, "first_run_seconds": first_s,
                       "continued_run_seconds": more_s, "spacing_zyx": cfg.get("spacing"),
                       "patch_size_zyx": cfg.get("patch_size"), "batch_size": cfg.get("batch_size"),
                       "final_validation": "skipped (fold all: its own training cases)"}}
    rec["score"] = score(pred, src, holdout, None)
    return rec


# --------------------------------------------------------------------------------------------------- compare
def _f(x, fmt="{:.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def verdicts(arms: dict[str, dict], dataset: str, device: str = "cpu") -> list[dict]:
    """The issue's verdicts on the saved arms: each {name, measured, target, verdict} (verdict None: an arm
    it needs is not saved yet)."""
    found = _verdicts(arms, dataset, device)
    for v in found:
        v["verdict"] = None if v["verdict"] is None else bool(v["verdict"])     # numpy's bool is not False
    return found


def _verdicts(arms: dict[str, dict], dataset: str, device: str) -> list[dict]:
    out = []

    def mean(a):
        return arms[a]["score"]["mean_dice"] if a in arms else None

    if "search" in arms and "planned" in arms:
        p = paired_difference(arms["search"]["score"]["per_case"], arms["planned"]["score"]["per_case"])
        out.append({"name": "search never below the planned recipe (paired 95 % lower bound)",
                    "measured": f"{p['mean']:+.4f} (95 % CI {p['low']:+.4f} … {p['high']:+.4f})",
                    "target": f"lower bound ≥ {SEARCH_LOWER_BOUND:+.3f}", "verdict": p["low"] >= SEARCH_LOWER_BOUND})
    else:
        out.append({"name": "search never below the planned recipe (paired 95 % lower bound)", "measured": "–",
                    "target": f"lower bound ≥ {SEARCH_LOWER_BOUND:+.3f}", "verdict": None})
    for ours in ("planned", "search"):
        ok = None if ours not in arms or "nnunet" not in arms else mean(ours) > mean("nnunet")
        measured = "–" if ok is None else f"{mean(ours):.4f} vs {mean('nnunet'):.4f}"
        out.append({"name": f"{ours} above nnU-Net (held-out mean Dice)", "measured": measured,
                    "target": "> nnU-Net's", "verdict": ok})
    if "prostate" in dataset.lower():
        out.append({"name": "search held-out mean Dice", "measured": _f(mean("search"), "{:.4f}"),
                    "target": f"≥ {PROSTATE_SEARCH_TARGET}",
                    "verdict": None if mean("search") is None else mean("search") >= PROSTATE_SEARCH_TARGET})
    if device.startswith("cuda") and "hippocampus" in dataset.lower():
        s, n = mean("search"), mean("nnunet")
        out.append({"name": "GPU: search held-out mean Dice", "measured": _f(s, "{:.4f}"),
                    "target": f"≥ {GPU_SEARCH_TARGET}", "verdict": None if s is None else s >= GPU_SEARCH_TARGET})
        out.append({"name": "GPU: search over nnU-Net", "measured": "–" if None in (s, n) else f"{s - n:+.4f}",
                    "target": f"≥ +{GPU_MARGIN}", "verdict": None if None in (s, n) else s - n >= GPU_MARGIN})
    return out


def forecast_rows(arm: str, f: dict, act: dict) -> list[tuple[str, float | None, float | None]]:
    """(what, forecast seconds, actual seconds) of one arm."""
    if arm == "search":
        final_f = f.get("final_winner_seconds") or f.get("final_seconds")
        total_f = (f.get("search_seconds") or 0) + final_f if final_f else f.get("total_seconds")
        return [("search", f.get("search_seconds"), act.get("search_seconds")),
                ("final training" + (" (the winner's forecast)" if f.get("final_winner_seconds") else ""),
                 final_f, act.get("final_seconds")),
                ("search + final training", total_f,
                 (act.get("search_seconds") or 0) + (act.get("final_seconds") or 0) or None)]
    epochs = f"{_f(f.get('epochs'), '{}')} → {_f(act.get('epochs'), '{}')} epochs"
    return [(f"training ({epochs})", f.get("training_seconds"), act.get("training_seconds"))]


def compare_text(arms: dict[str, dict], dataset: str, device: str = "cpu") -> tuple[str, bool]:
    """The comparison of the saved arms (a markdown-ish text) and whether any verdict FAILed."""
    lines = [f"# bench/budget_accuracy.py — {dataset}, compared {time.strftime('%Y-%m-%d %H:%M')}"]
    if not arms:
        return "\n".join(lines + ["no arm saved yet"]), False
    first = next(iter(arms.values()))
    lines.append(f"pool {len(first['pool'])} cases, {len(first['score']['per_case'])} held out (seed "
                 f"{first['seed']}); {first['minutes']:g} min per arm, {first['threads']} threads, {first['device']}")
    for name in ("pool", "holdout", "minutes", "threads", "seed", "device"):
        values = {a: json.dumps(r.get(name)) for a, r in arms.items()}
        if len(set(values.values())) > 1:
            lines.append(f"WARNING: the arms differ in {name}: "
                         + ", ".join(f"{a} {v[:60]}" for a, v in values.items()))
    for a, r in arms.items():
        lines.append(f"  {a}: {r['started']}, load {r['load_before'][0]:.2f} → {r['load_after'][0]:.2f} "
                     f"(1-min average), {r['machine']['cores']} cores; {r['model']}")
        if (r.get("details") or {}).get("no_signal"):
            lines.append("    the planned first trial learned nothing, so the search stopped and the planned recipe "
                         "trained for the rest of its time and the final training's: "
                         + r["details"]["no_signal"].get("why", ""))
        elif (r.get("details") or {}).get("planned_recipe_stood_in"):
            skipped = ((r.get("forecast") or {}).get("fitted") or {}).get("skip")
            lines.append("    no trial completed: the planned recipe stood in, trained for " + (
                "the search's time and the final training's (not even the smallest trial fitted the --time)"
                if skipped else "the final training's time (the trials ran out of --time before one finished)"))
        if r.get("non_default"):
            lines.append(f"    non-default (a smoke run, not the issue's): {r['non_default']}")
    lines += ["", "| arm | held-out mean Dice | per class | worst case | wall s | planning + preprocessing s | "
                  "search s | final training s | other s | prediction s (apart) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for a, r in arms.items():
        s, t = r["score"], r["time"]
        worst = min(s["per_case"].items(), key=lambda kv: kv[1])
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in s["per_class"].items())
        lines.append(f"| {a} | {s['mean_dice']:.4f} | {per_class} | {worst[1]:.3f} ({worst[0]}) | "
                     f"{r['wall_seconds']:.0f} | {t['planning_preprocessing']:.0f} | {t['search']:.0f} | "
                     f"{t['final_training']:.0f} | {t['other']:.0f} | {r['predict_seconds']:.0f} |")
    lines += ["", "| forecast vs actual | forecast s | actual s | actual / forecast |", "|---|---|---|---|"]
    for a, r in arms.items():
        for what, fs, acs in forecast_rows(a, r["forecast"], r["actual"]):
            ratio = acs / fs if fs and acs is not None else None
            lines.append(f"| {a}: {what} | {_f(fs)} | {_f(acs)} | {_f(ratio, '{:.2f}')} |")
    for a, r in arms.items():
        lines.append(f"  {a}'s forecast: {r['forecast'].get('text') or '–'}")
    lines += ["", "| paired (a − b) | cases | mean | 95 % CI | a better on | per class (a − b) |",
              "|---|---|---|---|---|---|"]
    for a, b in PAIRS:
        if a not in arms or b not in arms:
            lines.append(f"| {a} − {b} | – | not measured | – | – | – |")
            continue
        p = paired_difference(arms[a]["score"]["per_case"], arms[b]["score"]["per_case"])
        pc = ", ".join(f"{k} {arms[a]['score']['per_class'][k] - arms[b]['score']['per_class'].get(k, np.nan):+.3f}"
                       for k in arms[a]["score"]["per_class"])
        lines.append(f"| {a} − {b} | {p['n']} | {p['mean']:+.4f} | {p['low']:+.4f} … {p['high']:+.4f} | "
                     f"{p['better']}/{p['n']} | {pc} |")
    lines += ["", "| verdict | measured | target | result |", "|---|---|---|---|"]
    failed = False
    for v in verdicts(arms, dataset, device):
        res = "not measured" if v["verdict"] is None else ("PASS" if v["verdict"] else "FAIL")
        failed = failed or v["verdict"] is False
        lines.append(f"| {v['name']} | {v['measured']} | {v['target']} | {res} |")
    missing = [a for a in ARMS if a not in arms]
    lines.append("\noverall: " + ("FAIL" if failed else "PASS" if not missing else "incomplete")
                 + (f" (not saved yet: {', '.join(missing)})" if missing else ""))
    return "\n".join(lines), failed


# ------------------------------------------------------------------------------------------------------ main
def result_path(results: Path, dataset: str, arm: str, tag: str = "") -> Path:
    suffix = "txt" if arm == "compare" else "json"
    return results / f"budget_accuracy_{dataset}{'_' + tag if tag else ''}_{arm}.{suffix}"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="an MSD / nnU-Net raw dataset folder")
    ap.add_argument("--arm", choices=(*ARMS, "compare"), required=True)
    ap.add_argument("--minutes", type=float, default=30.0, help="wall-clock per arm (default 30)")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of the cases held out (never trained on)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="threads of every arm (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: our arms' --device, nnU-Net's -device")
    ap.add_argument("--nnunet-python", default=DEFAULT_NNUNET_PY, help="python of a venv with nnunetv2==2.8.1")
    ap.add_argument("--nnunet-config", default="3d_fullres")
    ap.add_argument("--nnunet-fold", default="all", help="all (default: every pool case) or 0…4")
    ap.add_argument("--nnunet-iterations", type=int, help="iterations per nnU-Net epoch, the first run's too "
                                                          "(default: fitted, nnU-Net's 250 while ≥ "
                                                          f"{NNUNET_MIN_EPOCHS} epochs fit; a smoke run sets it)")
    ap.add_argument("--jobs", type=int, default=1, help="the search arm's --jobs (default the CLI's 1)")
    ap.add_argument("--search-share", type=float, help="share of the minutes the search arm gives --time (default: "
                                                       "as the CLI's defaults split search and final training, 0.75)")
    ap.add_argument("--pool-cases", type=int, help="train on this many of the pool (a smoke run)")
    ap.add_argument("--holdout-cases", type=int, help="score this many of the held-out cases (a smoke run)")
    ap.add_argument("--results", help="folder of the result files (default bench/results)")
    ap.add_argument("--tag", default="", help="result names budget_accuracy_<dataset>_<tag>_<arm> (default: "
                                              "'gpu' with --device cuda, else none)")
    ap.add_argument("--work", default="/tmp/autoseg_bench/budget_accuracy", help="scratch folder")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    src = Path(args.data).resolve()
    results = Path(args.results).resolve() if args.results else RESULTS
    tag = args.tag or ("gpu" if args.device.startswith("cuda") else "")
    if args.arm == "compare":
        arms = {a: json.loads(result_path(results, src.name, a, tag).read_text())
                for a in ARMS if result_path(results, src.name, a, tag).is_file()}
        text, failed = compare_text(arms, src.name, args.device)
        print(text)
        results.mkdir(parents=True, exist_ok=True)
        result_path(results, src.name, "compare", tag).write_text(text + "\n")
        return 1 if failed else 0

    from AutoSegCore.data.dataset import load_dataset

    names = sorted(c.name for c in load_dataset(src).cases)
    pool, holdout = split(names, args.holdout, args.seed)
    pool, holdout = subset(pool, args.pool_cases, args.seed), subset(holdout, args.holdout_cases, args.seed)
    work = Path(args.work) / (src.name + (f"_{tag}" if tag else "")
                              + (f"_p{len(pool)}h{len(holdout)}" if args.pool_cases or args.holdout_cases else ""))
    work.mkdir(parents=True, exist_ok=True)
    pool_dir = pool_dataset(src, work / "pool", pool)
    os.environ.update(thread_env(args.threads, args.device))
    if args.threads < (os.cpu_count() or 1) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])   # children inherit it
    load_before = os.getloadavg()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    if load_before[0] > 0.5:
        print(f"[budget_accuracy] note: load average {load_before[0]:.2f} at the start — the arm measures "
              "wall-clock, so the cores should be idle", flush=True)
    rec = run_nnunet(args, pool_dir, holdout, src, work) if args.arm == "nnunet" else \
        run_ours(args.arm, args, pool_dir, holdout, src, work)
    own = {"nnunet": ("nnunet-iterations",), "search": ("search-share",)}.get(args.arm, ())
    non_default = {k: getattr(args, k.replace("-", "_")) for k in ("pool-cases", "holdout-cases", *own)
                   if getattr(args, k.replace("-", "_")) is not None}
    result = {"bench": "budget_accuracy", "dataset": src.name, "arm": args.arm, "minutes": args.minutes,
              "seed": args.seed, "holdout_fraction": args.holdout, "threads": args.threads, "device": args.device,
              "jobs": args.jobs, "non_default": non_default, "pool": pool, "holdout": holdout, "started": started,
              "machine": machine(), "load_before": list(load_before), "load_after": list(os.getloadavg()),
              "command": "python bench/budget_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv),
              **rec}
    results.mkdir(parents=True, exist_ok=True)
    out = result_path(results, src.name, args.arm, tag)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    t = rec["time"]
    print(f"{src.name} {args.arm}: held-out mean Dice {rec['score']['mean_dice']:.4f} ({len(holdout)} cases; wall "
          f"{rec['wall_seconds']:.0f} s = planning/preprocessing {t['planning_preprocessing']:.0f} + search "
          f"{t['search']:.0f} + final training {t['final_training']:.0f} + other {t['other']:.0f}; prediction "
          f"{rec['predict_seconds']:.0f} s) → {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
