"""Experiment: which capacity buys the most Dice per CPU-second at the budget_accuracy_v1 bench's final scale?

Why (issue 6): the 2-hour search arm's winner (depth 4, 32 channels) beats the fixed recipe (16 channels) by only
+0.0045 on unseen cases, and the search ranks configs after equal epochs while the final training is budgeted in
wall-clock.  This asks, at equal wall-clock, whether more capacity at the same step cost (depth 5: the extra level
works on 1/8 of the voxels) or wider layers (48 channels: 1.7× the step) beat the searched winner.  The reference
(A) is the searched winner itself, trained in the same run for the same minutes.

Every arm trains with the trainer's ``training.time_limit`` (cosine schedule re-fitted to the budget) on the same
122 cases of the bench's pool and is scored on the same 30 internal validation cases; the bench's 30 held-out
cases are never touched, so the result can steer the next search without tuning on the held-out figure.  Printed:
each arm's steps, ms/step and validation Dice, and the paired difference to A over the 30 cases.

    .venv/bin/python bench/capacity_pilot.py                    # 3 arms × 20 min (≈ 62 min, idle machine)
    .venv/bin/python bench/capacity_pilot.py --minutes 2        # end-to-end check (figures not comparable)
    .venv/bin/python bench/capacity_pilot.py --ensembles        # the saved arms averaged (no training, ≈ 2 min)
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget_accuracy_v1 import paired_text, train_until  # noqa: E402
from search_speedup import DEFAULT_DATA, evaluate_holdout, machine_line, run_saved, split_holdout  # noqa: E402

from AutoSegCore.data.dataset import load_dataset  # noqa: E402
from AutoSegCore.data.splits import holdout_split  # noqa: E402

# the 2-hour search arm's winner (trial 26 of the 2026-11-30 and 2026-12-01 sittings, seed 0): unet-recipe's
# values on top of Resources/Configs/recipe.yaml, as its study recorded them in the trial's full_config
WINNER = {
    "network": {"arch": "unet", "depth": 4, "channels": 32, "multiplier": 2.0, "conv": "3d", "n_convs": 2,
                "norm": "instance", "deep_supervision": False, "max_channels": 320},
    "preprocessing": {"normalization": "zscore", "resampling": "none", "crop_foreground": False},
    "training": {"loss": "dice", "optimizer": "adamw", "lr": 0.002946111463692364,
                 "weight_decay": 1.2962183088281504e-06, "scheduler": "cosine", "warmup_steps": 200,
                 "batch_size": 4,
                 "augmentation": {"flip_axes": [0], "rotate_prob": 0.25234203893567986,
                                  "scale_prob": 0.271394323262854, "gamma_prob": 0.13437785156121898,
                                  "intensity_scale": 0.1, "intensity_shift_prob": 0.09956908911081108,
                                  "intensity_shift": 0.1, "translate": 4}},
}
ARMS = {
    "A: winner (depth 4, 32 ch)": {},
    "B: depth 5, 32 ch": {"depth": 5},
    "C: depth 4, 48 ch": {"channels": 48},
}


def _run(args) -> int:
    print(f"# bench/capacity_pilot.py — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"start: {machine_line()}")
    print(f"command: python bench/capacity_pilot.py {' '.join(sys.argv[1:])}".rstrip())
    ds = load_dataset(args.data)
    pool, _holdout = split_holdout(ds, 30, args.seed)             # the bench's held-out cases: never used here
    train, val = holdout_split(pool, 0.2, args.seed)
    print(f"data: {ds.name}: {len(train)} training / {len(val)} validation cases of the bench's {len(pool)}-case "
          f"pool (its 30 held-out cases unused); {args.minutes:g} min per arm, {args.threads} threads, CPU")
    work = Path(args.work)
    results = {}
    for name, change in ARMS.items():
        cfg = copy.deepcopy(WINNER)
        cfg["network"].update(change)
        out = work / name.split(":")[0]
        run = train_until(ds, cfg, out, train, val, time.time() + args.minutes * 60, steps=args.steps,
                          seed=args.seed, cache_dir=work / "cache")
        scored = evaluate_holdout(out, ds, val)
        results[name] = scored
        print(f"| {name} | {run['params']:,} params | {run['epochs_done']} × {run['steps']} steps | "
              f"{run['step_s'] * 1000:.0f} ms/step | val Dice {scored['dice']:.4f} ("
              + ", ".join(f"{k} {v:.4f}" for k, v in scored["per_class"].items()) + ") |", flush=True)
    ref_name = next(iter(ARMS))            # A, the reference
    for name in list(ARMS)[1:]:
        text = paired_text(results[name], results[ref_name], (f"arm {name[0]}", "arm A"))
        print(f"paired over the {len(val)} validation cases: {text}")
    print(f"end: {machine_line()}")
    return 0


def _ensembles(args) -> int:
    """No training: the saved arms' models alone and averaged (best/'s ensemble format), flip TTA on and off,
    on the same internal validation cases, paired against A — does averaging 20-minute models of different
    capacity beat one of them (and one model trained 4× as long: 0.8820 in the 2026-11-30 sitting)?"""
    from AutoSegCore.search.final import install_best

    print(f"# bench/capacity_pilot.py --ensembles — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"start: {machine_line()}")
    ds = load_dataset(args.data)
    pool, _holdout = split_holdout(ds, 30, args.seed)             # the bench's held-out cases: never used here
    _train, val = holdout_split(pool, 0.2, args.seed)
    work = Path(args.work)
    arms = [name.split(":")[0] for name in ARMS]
    missing = [a for a in arms if not (work / a / "model.json").is_file()]
    if missing:
        print(f"no saved model for arm(s) {', '.join(missing)} in {work}: run the pilot first")
        return 2
    scored: dict[tuple[str, bool], dict] = {}
    for combo in ("A", "B", "C", "AB", "AC", "ABC"):
        members = [work / c for c in combo]
        folder = members[0] if len(members) == 1 else install_best(work / f"avg_{combo}", members, ds.labels, [])
        for tta in (False, True):
            scored[(combo, tta)] = evaluate_holdout(folder, ds, val, tta=tta)
    print("| models | members | val Dice | with flip TTA | paired vs A (default) |")
    print("|---|---|---|---|---|")
    for combo in ("A", "B", "C", "AB", "AC", "ABC"):
        text = "–" if combo == "A" else paired_text(scored[(combo, False)], scored[("A", False)],
                                                     (combo, "A"))
        print(f"| {combo} | {len(combo)} | {scored[(combo, False)]['dice']:.4f} | "
              f"{scored[(combo, True)]['dice']:.4f} | {text} |", flush=True)
    print(f"end: {machine_line()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget of each arm")
    ap.add_argument("--steps", type=int, default=50, help="steps per epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/autoseg_bench/capacity_pilot", help="scratch folder")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/capacity_pilot*.txt")
    ap.add_argument("--ensembles", action="store_true",
                    help="no training: score the saved arms alone and averaged (capacity_pilot_ensembles.txt)")
    args = ap.parse_args(argv)
    if args.ensembles:
        return run_saved("capacity_pilot_ensembles", args, _ensembles)
    if args.minutes <= 0:
        ap.error("--minutes must be positive")
    return run_saved("capacity_pilot", args, _run)


if __name__ == "__main__":
    sys.exit(main())
