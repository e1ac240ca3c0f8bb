"""Benchmark: proxy search (proxy data + proxy net) vs full search, same space, strategy and trial count.

Issue 6, "What it must show": on Hippocampus (the 182 shared cases) run the same space × strategy twice —
(i) full data + full network, (ii) proxy data (``mi+roi:0.25``) + proxy network (``levels=3,width=0.25``: each
sampled network at a quarter of its width and at most 3 levels, so the proxy arm searches the same space, sizes
included) — with the same number of trials; time each search phase; then retrain each arm's best config with
IDENTICAL final training (full network, same epochs / steps / seed / training cases) and score it on held-out
cases that neither the search nor the final training saw.  Reference = arm (i), measured in the same run.
Target: search ≥ 10× faster at ≤ 0.01 held-out Dice loss.

    .venv/bin/python bench/search_speedup.py            # defaults: ≈ 16 min on 2 idle cores
    .venv/bin/python bench/search_speedup.py --quick    # a small end-to-end check (≈ 10 min)
    .venv/bin/python bench/search_speedup.py --quick --device cuda --no-save   # on a GPU (make gpu-check)

Output is printed and saved to bench/results/search_speedup.txt (atomic write).  Exit status 0 only when the
overall verdict is PASS, 1 when it is FAIL (as a crash would exit: make gpu-check passes a stage only on 0).
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import shutil
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from AutoSegCore.data.dataset import load_dataset, read_case
from AutoSegCore.data.splits import holdout_split
from AutoSegCore.events import EventWriter
from AutoSegCore.search.runner import SearchRunner
from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.search.trial_process import read_metrics
from AutoSegCore.training.api import train_model
from AutoSegCore.inference.predictor import Predictor
from AutoSegCore.training.metrics import evaluate_pair
from AutoSegCore.utils.io import read_json, write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("AUTOSEG_HIPPO", "/work/shared/data/Task04_Hippocampus")
SPEEDUP_TARGET, DICE_LOSS_TARGET = 10.0, 0.01
DEVICE = "cpu"                        # --device: where trials, final trainings and held-out predictions run


class Tee(io.TextIOBase):
    """Print to the terminal and keep a copy for the results file."""

    def __init__(self, stream) -> None:
        self.stream, self.buf = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.stream.flush()
        return self.buf.write(s)

    def flush(self) -> None:
        self.stream.flush()


def machine_line() -> str:
    la = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min; the machine is shared with other jobs)")


def split_holdout(ds, n_holdout: int, seed: int) -> tuple[list[str], list[str]]:
    """(pool, holdout): the holdout cases are never seen by any search or final training of the benchmark."""
    names = sorted(c.name for c in ds.cases)
    pool, holdout = holdout_split(names, n_holdout / len(names), seed)
    return pool, holdout


def evaluate_holdout(model_dir: Path, ds, holdout: list[str], tta: bool = False) -> dict:
    """Mean foreground Dice of ``model_dir`` on ``holdout``, predicted in each case's original geometry.

    ``tta``: also average the flips along the axes the model was trained to mirror (``autoseg predict --tta``).
    """
    predictor = Predictor(model_dir, device=DEVICE, tta=tta)
    per_case: dict[str, float] = {}
    per_class: dict[str, list[float]] = {}
    for name in holdout:
        arr = read_case(ds.case(name))
        pred = predictor.predict_array(arr.image, arr.affine, name)
        m = evaluate_pair(pred, arr.label, ds.labels, arr.spacing)
        per_case[name] = float(m["mean_dice"])
        for k, v in m["dice"].items():
            per_class.setdefault(k, []).append(v)
    return {"dice": float(np.mean(list(per_case.values()))),
            "per_class": {k: float(np.mean(v)) for k, v in per_class.items()}, "per_case": per_case}


class TrialClock:
    """Event listener: wall-clock start/end of every trial as the parent saw it (includes process start-up)."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.end: dict[int, float] = {}
        self.state: dict[int, str] = {}

    def __call__(self, rec: dict) -> None:
        if rec["event"] == "trial_started":
            self.start[rec["trial"]] = rec["time"]
        elif rec["event"] == "trial_finished":
            self.end[rec["trial"]] = rec["time"]
            self.state[rec["trial"]] = rec.get("state", "?")


def time_breakdown(work: Path, clock: TrialClock) -> dict:
    """Where the search time went, summed over trials.

    * start-up: parent launch → child timer start (Python + torch/MONAI import, study load);
    * data: child timer start → first epoch (dataset index, preprocessing / cache, padding to the canvas,
      network build) — i.e. child seconds minus the epochs' seconds;
    * train+validate: the epochs' own seconds, of which validation (``val_seconds`` of each epoch record);
    * bookkeeping: parent-side remainder (result read, study tell, polling granularity 0.3 s).
    """
    out = {"trials": 0, "wall": 0.0, "startup": 0.0, "data": 0.0, "epochs": 0.0, "validate": 0.0, "n_epochs": 0}
    for number, t0 in clock.start.items():
        res_path = SearchDir(work).trial(number) / "result.json"
        wall = clock.end.get(number, t0) - t0
        out["trials"] += 1
        out["wall"] += wall
        if not res_path.is_file():
            continue
        res = read_json(res_path)
        history = read_metrics(res_path.parent)              # the trial's per-epoch records
        ep = sum(float(h.get("seconds") or 0) for h in history)
        child = float(res.get("seconds") or 0)
        out["epochs"] += ep
        out["validate"] += sum(float(h.get("val_seconds") or 0) for h in history)
        out["n_epochs"] += len(history)
        out["data"] += max(0.0, child - ep)
        out["startup"] += max(0.0, wall - child)
    out["other"] = max(0.0, out["wall"] - out["startup"] - out["data"] - out["epochs"])
    return out


class StepClock:
    """Seconds the parent spends in each set-up step of ``prepare`` (and in the per-trial preprocessing fits): the
    step functions are wrapped for the arm's duration (plain timing, nothing replaced) and restored after."""

    STEPS = (("AutoSegCore.data.dataset", "load_dataset", "check"),
             ("AutoSegCore.search.storage", "open_storage", "storage"),
             ("AutoSegCore.search.storage", "create_or_load_study", "storage"),
             ("AutoSegCore.search.prepare", "select_cases", "select"),
             ("AutoSegCore.search.prepare", "stage_fingerprint", "fingerprint"),
             ("AutoSegCore.search.runner", "preprocessor_file", "preprocessing"))

    def __init__(self) -> None:
        self.seconds = {label: 0.0 for _, _, label in self.STEPS}
        self._saved: list[tuple[object, str, object]] = []

    def _wrap(self, fn, label: str):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[label] += time.perf_counter() - t0
        return timed

    def __enter__(self) -> "StepClock":
        import importlib

        for module, name, label in self.STEPS:
            owner = importlib.import_module(module)
            *path, attr = name.split(".")
            for part in path:
                owner = getattr(owner, part)
            fn = getattr(owner, attr, None)
            if fn is not None:                   # a renamed step is left untimed, not an error
                self._saved.append((owner, attr, fn))
                setattr(owner, attr, self._wrap(fn, label))
        return self

    def __exit__(self, *exc) -> None:
        for owner, attr, fn in reversed(self._saved):
            setattr(owner, attr, fn)
        self._saved.clear()


def run_search_arm(label: str, work: Path, args, holdout: list[str], proxy_data: str, proxy_net: str,
                   steps: int) -> dict:
    """One search phase (no final training): case selection + trials; timed from the caller's side."""
    shutil.rmtree(work, ignore_errors=True)           # a fresh study: the same --out would resume
    clock = TrialClock()
    events = EventWriter(None)
    events.listeners.append(clock)
    settings = SearchSettings(
        data=args.data, out=str(work), space=args.space, strategy=args.strategy, proxy_data=proxy_data,
        proxy_net=proxy_net, trials=args.trials, epochs=args.epochs, min_epochs=args.min_epochs,
        steps_per_epoch=steps, seed=args.seed, device=DEVICE, holdout=holdout, final=False, jobs=args.jobs,
        trial_timeout=args.trial_timeout)
    with StepClock() as steps:
        t0 = time.perf_counter()
        runner = SearchRunner(settings, events)
        runner.prepare()
        t1 = time.perf_counter()
        summary = runner.run_trials()
        t2 = time.perf_counter()
    best = runner.prepared.study.best_trial
    counts = {k: v for k, v in summary["counts"].items() if v}
    return {"label": label, "prepare": t1 - t0, "trials_s": t2 - t1, "total": t2 - t0, "counts": counts,
            "best_number": best.number, "best_value": best.value, "best_params": best.params,
            "full_config": best.user_attrs["full_config"], "n_train": len(runner.prepared.train_cases),
            "n_val": len(runner.prepared.val_cases), "breakdown": time_breakdown(work, clock), "steps": steps.seconds}


def final_train(full_config: dict, ds, pool: list[str], out: Path, *, epochs: int, steps: int, seed: int) -> dict:
    """IDENTICAL final training for every arm: full network, same cases, epochs, steps and seed."""
    shutil.rmtree(out, ignore_errors=True)
    train, val = holdout_split(pool, 0.2, seed)
    cfg = copy.deepcopy(full_config)
    cfg["training"].update(epochs=epochs, steps_per_epoch=steps, seed=seed, val_every=epochs)
    t0 = time.perf_counter()
    res = train_model(ds, cfg, out, train_cases=train, val_cases=val, device=DEVICE, cache_dir=out / "cache")
    return {"seconds": time.perf_counter() - t0, "val_dice": res.val_dice, "params": res.num_params,
            "n_train": len(train), "n_val": len(val)}


def fmt_params(p: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--space", default="unet-pipeline")
    ap.add_argument("--strategy", default="random",
                    help="random (default) proposes the same configurations in both arms, so the verdict measures "
                         "the proxy arm's ranking and cost; a model-based strategy (bohb, tpe) fed different values "
                         "proposes different configurations after its first few, which mixes sampler luck into it")
    ap.add_argument("--proxy-data", default="mi+roi:0.25")
    ap.add_argument("--proxy-net", default="levels=3,width=0.25",
                    help="proxy network rule (width=0.25 keeps the space's size parameters searchable; levels=3 is "
                         "the proxy paper's fixed proxy network, which leaves the size to the base config)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4, help="maximum epochs per trial (the fidelity unit)")
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40,
                    help="steps per epoch in the search (with 25, most configs are still near Dice 0 after 4 epochs "
                         "and both arms rank noise)")
    ap.add_argument("--proxy-steps", type=int, default=None,
                    help="steps per epoch of the proxy arm's trials (default: --steps); a 4-channel proxy net "
                         "learns more slowly per step, and its steps are ≈ 10× cheaper")
    ap.add_argument("--final-epochs", type=int, default=12)
    ap.add_argument("--final-steps", type=int, default=25)
    ap.add_argument("--holdout", type=int, default=30, help="cases held out from everything, scored at the end")
    ap.add_argument("--trial-timeout", type=float, default=None, help="seconds; slower trials count as failed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2,
                    help="trials in parallel in both arms (each on threads/jobs threads, as `autoseg search --jobs`)")
    ap.add_argument("--work", default="/tmp/autoseg_bench/search_speedup", help="scratch folder (wiped)")
    ap.add_argument("--quick", action="store_true", help="4 trials × 2 epochs × 10 steps, final 6 × 25 steps")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/search_speedup.txt")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (make gpu-check): trials, final "
                    "trainings and held-out predictions run there; --jobs trials share it, each with a memory cap")
    args = ap.parse_args(argv)
    global DEVICE
    from AutoSegCore.utils.device import pick_device

    DEVICE = str(pick_device(args.device))
    if args.quick:
        args.trials, args.epochs, args.steps, args.final_epochs, args.final_steps = 4, 2, 10, 6, 25
    return run_saved("search_speedup", args, _run)


def run_saved(name: str, args, body) -> int:
    """Run ``body(args)`` on ``args.threads`` threads, printing and keeping a copy for bench/results/<name>.txt."""
    os.environ["AUTOSEG_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    tee = Tee(sys.stdout)
    with redirect_stdout(tee):
        code = body(args)
    if not args.no_save:
        write_text(ROOT / "bench" / "results" / f"{name}.txt", tee.buf.getvalue())
    return code


def _run(args) -> int:
    started = time.perf_counter()
    print(f"# bench/search_speedup.py — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"start: {machine_line()}")
    print(f"command: python bench/search_speedup.py {' '.join(sys.argv[1:])}".rstrip())
    ds = load_dataset(args.data)
    pool, holdout = split_holdout(ds, args.holdout, args.seed)
    print(f"data: {ds.name}, {len(ds.cases)} cases → {len(pool)} for search + final training, {len(holdout)} "
          f"held out (seed {args.seed}); space {args.space}, strategy {args.strategy}, {args.trials} trials × "
          f"≤ {args.epochs} epochs × {args.steps} steps, {args.jobs} jobs × {max(1, args.threads // args.jobs)} "
          f"thread(s) each, CPU")
    work = Path(args.work)
    proxy_steps = args.proxy_steps or args.steps
    if proxy_steps != args.steps:
        print(f"proxy arm: {proxy_steps} steps per epoch (full arm {args.steps}); trials and epochs the same")
    arms = [run_search_arm("(i) full data + full net", work / "full", args, holdout, "full", "full", args.steps)]
    print(f"  {arms[0]['label']}: {arms[0]['total']:.0f} s, best trial {arms[0]['best_number']} "
          f"(val {arms[0]['best_value']:.3f})")
    arms.append(run_search_arm(f"(ii) {args.proxy_data} + {args.proxy_net}", work / "proxy", args, holdout,
                               args.proxy_data, args.proxy_net, proxy_steps))
    print(f"  {arms[1]['label']}: {arms[1]['total']:.0f} s, best trial {arms[1]['best_number']} "
          f"(val {arms[1]['best_value']:.3f})")
    finals: list[dict] = []
    for i, arm in enumerate(arms):
        same = i > 0 and arm["full_config"] == arms[0]["full_config"]
        if same:        # same best config → the identical final training would give the identical model
            finals.append({**finals[0], "reused": True})
            continue
        f = final_train(arm["full_config"], ds, pool, work / f"final{i}", epochs=args.final_epochs,
                        steps=args.final_steps, seed=args.seed)
        f["holdout"] = evaluate_holdout(work / f"final{i}", ds, holdout)
        finals.append(f)
        print(f"  final training of {arm['label']}'s best: {f['seconds']:.0f} s, held-out Dice "
              f"{f['holdout']['dice']:.4f}")

    print()
    print("| arm | cases train/val | select s | trials s | search s | trials (state) | best proxy val | "
          "held-out Dice |")
    print("|---|---|---|---|---|---|---|---|")
    for arm, f in zip(arms, finals):
        states = ", ".join(f"{v} {k.lower()}" for k, v in arm["counts"].items())
        print(f"| {arm['label']} | {arm['n_train']}/{arm['n_val']} | {arm['prepare']:.1f} | {arm['trials_s']:.1f} | "
              f"{arm['total']:.1f} | {states} | {arm['best_value']:.4f} | {f['holdout']['dice']:.4f} |")
    print()
    print("best configs (retrained identically: full net, "
          f"{args.final_epochs} epochs × {args.final_steps} steps, {finals[0]['n_train']} training cases, seed "
          f"{args.seed}):")
    for arm, f in zip(arms, finals):
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in f["holdout"]["per_class"].items())
        print(f"  {arm['label']}: trial {arm['best_number']}: {fmt_params(arm['best_params'])}; "
              f"{f['params']:,} params; held-out {per_class}" + ("  (same config as (i): model reused)"
                                                                    if f.get("reused") else ""))
    print()
    print("where the search time went (summed over trials, seconds; see time_breakdown's docstring):")
    print("| arm | case selection | process start-up | data load + preprocessing | epochs (train + validate) "
          "| of which validate | epochs run | parent bookkeeping | s per trial |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm in arms:
        b = arm["breakdown"]
        print(f"| {arm['label']} | {arm['prepare']:.1f} | {b['startup']:.1f} | {b['data']:.1f} | {b['epochs']:.1f} "
              f"| {b['validate']:.1f} | {b['n_epochs']} | {b['other']:.1f} | {b['wall'] / max(1, b['trials']):.1f} |")
    print()
    print("where the case selection went (the parent's set-up, seconds; the preprocessing fits run during the trials):")
    print("| arm | case selection | dataset checks (headers + voxels) | study storage | proxy data selection | "
          "fingerprint (stage output) | rest | preprocessing fits (stage output) |")
    print("|---|---|---|---|---|---|---|---|")
    for arm in arms:
        st = arm["steps"]
        rest = arm["prepare"] - st["check"] - st["storage"] - st["select"] - st["fingerprint"]
        print(f"| {arm['label']} | {arm['prepare']:.1f} | {st['check']:.1f} | {st['storage']:.1f} | {st['select']:.1f} "
              f"| {st['fingerprint']:.1f} | {max(0.0, rest):.1f} | {st['preprocessing']:.2f} |")
    speedup = arms[0]["total"] / max(arms[1]["total"], 1e-9)
    loss = finals[0]["holdout"]["dice"] - finals[1]["holdout"]["dice"]
    ok_speed, ok_dice = speedup >= SPEEDUP_TARGET, loss <= DICE_LOSS_TARGET
    print()
    print("| measure | proxy | reference (full) | ratio / difference | target | verdict |")
    print("|---|---|---|---|---|---|")
    print(f"| search wall-clock | {arms[1]['total']:.1f} s | {arms[0]['total']:.1f} s | {speedup:.2f}× faster "
          f"| ≥ {SPEEDUP_TARGET:g}× | {'PASS' if ok_speed else 'FAIL'} |")
    ep = [a["breakdown"]["epochs"] for a in arms]
    print(f"|   (info) epochs only (train + validate) | {ep[1]:.1f} s | {ep[0]:.1f} s | "
          f"{ep[0] / max(ep[1], 1e-9):.2f}× | info | – |")
    print(f"| held-out Dice after identical final training | {finals[1]['holdout']['dice']:.4f} | "
          f"{finals[0]['holdout']['dice']:.4f} | {-loss:+.4f} | ≥ −{DICE_LOSS_TARGET:g} | "
          f"{'PASS' if ok_dice else 'FAIL'} |")
    verdict = "PASS" if ok_speed and ok_dice else "FAIL"
    print()
    print(f"overall: {verdict} (≥ {SPEEDUP_TARGET:g}× faster at ≤ {DICE_LOSS_TARGET:g} Dice loss); "
          f"total {time.perf_counter() - started:.0f} s")
    print(f"end: {machine_line()}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
