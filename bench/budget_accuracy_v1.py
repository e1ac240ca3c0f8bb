"""Benchmark: search + final training within a wall-clock budget vs a strong fixed recipe given the same budget.

Issue 6, "What it must show": on Hippocampus (the 182 shared cases), hold out cases that neither arm ever sees;
  * arm "search": BOHB over ``unet-recipe`` (capacity, lr, weight decay, loss and augmentation around the
    recipe) on proxy data (``mi+roi:0.25``, full network) for ``--search-fraction`` of the budget; then the
    top ``--final-top-k`` configs share the rest, each trained on all training cases, and their averaged
    probabilities are the model (``best/``'s ensemble format, as ``autoseg search --final-top-k`` builds);
  * arm "recipe" (the reference, measured in the same run): the strong fixed recipe of
    ``../shared/docs/baselines.md`` through our trainer — UNet 16/32/64/128 with 2 residual units, AdamW 3e-3,
    weight decay 1e-5, 200-step warm-up + cosine, axis-0 flips, intensity scale ±0.1 / shift ±0.1, translation
    ±4, batch 4 — trained for the whole budget.
Both arms' training uses the same training/validation cases and the same seed (``--final-data split``: 80 % of
the pool, 20 % internal validation; ``all``: the whole pool, no internal validation); the trainer's
``training.time_limit`` re-fits the cosine schedule to end at the budget.  Every arm's model is scored on the
held-out cases twice, as ``autoseg predict`` gives it and with ``--tta`` (flips along the trained mirror axes),
and the verdict compares like with like.  Targets: held-out mean foreground Dice ≥ 0.89 and ≥ 0.01 above the recipe.

    .venv/bin/python bench/budget_accuracy_v1.py                        # full run: 2 h per arm (≈ 4 h)
    .venv/bin/python bench/budget_accuracy_v1.py --arm recipe           # one 2-hour arm per sitting; the
    .venv/bin/python bench/budget_accuracy_v1.py --arm search           # second run compares with the saved first
    .venv/bin/python bench/budget_accuracy_v1.py --arm compare          # both saved arms, paired per case
    .venv/bin/python bench/budget_accuracy_v1.py --budget-minutes 12    # reduced-budget end-to-end check

Output is printed and saved to bench/results/budget_accuracy.txt (atomic write); every arm's figures are also
kept in bench/results/budget_accuracy_<arm>.json (``--final-data all``: budget_accuracy_all*), so the two arms can run in separate sittings on an idle
machine (each needs the cores to itself for 2 hours) and are compared only when their settings match.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_speedup import (DEFAULT_DATA, run_saved, evaluate_holdout, fmt_params, machine_line,  # noqa: E402
                            split_holdout, time_breakdown, TrialClock)

from AutoSegCore.config import EPOCH_CAP_WITH_TIME_LIMIT, make_config  # noqa: E402
from AutoSegCore.data.dataset import load_dataset  # noqa: E402
from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor  # noqa: E402
from AutoSegCore.data.splits import holdout_split  # noqa: E402
from AutoSegCore.events import EventWriter  # noqa: E402
from AutoSegCore.search.final import install_best, rank_trials  # noqa: E402
from AutoSegCore.search.runner import SearchRunner  # noqa: E402
from AutoSegCore.search.settings import SearchSettings  # noqa: E402
from AutoSegCore.training.process import prepare_process  # noqa: E402
from AutoSegCore.training.trainer import Trainer  # noqa: E402
from AutoSegCore.utils.io import write_text  # noqa: E402

DICE_TARGET, MARGIN_TARGET = 0.89, 0.01

# baselines.md's "stronger fixed recipe": bench/configs/fixed-recipe.yaml (the recipe before the planner), with its mirror axes pinned to
# the axis-0 flips baselines.md measured (what "auto" decides on Hippocampus, fixed here so the arm never varies)
RECIPE = yaml.safe_load((Path(__file__).resolve().parent / "configs" / "fixed-recipe.yaml").read_text())
RECIPE["training"]["augmentation"]["flip_axes"] = [0]


def train_until(ds, config: dict, out: Path, train: list[str], val: list[str], deadline: float, *,
                steps: int, seed: int, cache_dir: Path) -> dict:
    """Train ``config`` so that its cosine schedule ends at ``deadline`` (time.time()).

    The trainer's own ``training.time_limit`` (what ``autoseg train --time`` and ``autoseg search --final-time``
    use): the schedule's end is re-fitted to the measured epoch time after every epoch, validation only at the end.
    """
    shutil.rmtree(out, ignore_errors=True)
    cfg = make_config(copy.deepcopy(config))
    pre = Preprocessor(cfg["preprocessing"]).fit(ds.subset(train))
    cache = PreprocessCache(pre, cache_dir)
    train_pp, val_pp = cache.get_many([ds.case(n) for n in train]), cache.get_many([ds.case(n) for n in val])
    extra = {"preprocessor": pre.state(), "channel_names": ds.channel_names, "dataset": ds.name,
             "train_cases": list(train), "val_cases": list(val)}
    cfg["training"].update(seed=seed, steps_per_epoch=steps, epochs=EPOCH_CAP_WITH_TIME_LIMIT,
                           val_every=EPOCH_CAP_WITH_TIME_LIMIT, time_limit=max(1.0, deadline - time.time() - 5.0))
    prepare_process("cpu", seed=seed)                 # the global seeds, as train_model sets them
    trainer = Trainer(cfg, train_pp, val_pp, labels=ds.labels, out_dir=out, in_channels=ds.num_channels,
                      device="cpu", extra_info=extra)
    t1 = time.perf_counter()
    result = trainer.fit(resume=False)
    hist = result.history
    horizons = [r["horizon"] for r in hist]
    train_s = sorted((r["seconds"] - r.get("val_seconds", 0.0)) / steps for r in hist)
    return {"epochs_planned": horizons[0], "epochs_replanned": horizons[-1],
            "replans": sum(a != b for a, b in zip(horizons, horizons[1:])), "epochs_done": result.epochs_done,
            "steps": steps, "step_s": train_s[len(train_s) // 2], "seconds": time.perf_counter() - t1,
            "val_dice": result.val_dice if val else None, "train_cases": len(train), "params": result.num_params}


def final_cases(pool: list[str], args) -> tuple[list[str], list[str]]:
    """The budgeted trainings' cases: 80 % / 20 % of the pool (internal validation), or all of it (``--final-data
    all``: 25 % more training cases, no internal validation; the held-out cases judge either way)."""
    if args.final_data == "all":
        return list(pool), []
    return holdout_split(pool, 0.2, args.seed)


def evaluate_both(model: Path, ds, holdout: list[str]) -> dict:
    """Held-out Dice as ``autoseg predict`` gives it, and with ``--tta`` (flips along the trained mirror axes).

    Both are measured for every arm so that TTA is compared like for like; the wall clock above excludes them.
    """
    return {"holdout": evaluate_holdout(model, ds, holdout), "holdout_tta": evaluate_holdout(model, ds, holdout, True)}


def run_recipe_arm(ds, pool, holdout, args, work: Path) -> dict:
    start = time.time()
    train, val = final_cases(pool, args)
    fin = train_until(ds, RECIPE, work / "recipe", train, val, start + args.budget_minutes * 60,
                      steps=args.final_steps, seed=args.seed, cache_dir=work / "cache_recipe")
    fin["wall"] = time.time() - start
    fin["model"] = str(work / "recipe")
    fin.update(evaluate_both(work / "recipe", ds, holdout))
    return fin


def run_search_arm(ds, pool, holdout, args, work: Path) -> dict:
    start = time.time()
    deadline = start + args.budget_minutes * 60
    search_dir = work / "search"
    shutil.rmtree(search_dir, ignore_errors=True)
    shutil.rmtree(work / "final", ignore_errors=True)
    clock = TrialClock()
    events = EventWriter(None)
    events.listeners.append(clock)
    settings = SearchSettings(
        data=args.data, out=str(search_dir), space=args.space, strategy=args.strategy, proxy_data=args.proxy_data,
        proxy_net=args.proxy_net, trials=None, time_limit=1.0, epochs=args.epochs, min_epochs=args.min_epochs,
        steps_per_epoch=args.steps, seed=args.seed, device="cpu", holdout=holdout, final=False, jobs=args.jobs,
        base_config=RECIPE, trial_timeout=args.search_fraction * args.budget_minutes * 60)
    runner = SearchRunner(settings, events)
    runner.prepare()
    selected = time.time()
    # the trial loop gets what is left of the search share after case selection
    runner.settings.time_limit = max(1.0, start + args.search_fraction * args.budget_minutes * 60 - selected)
    summary = runner.run_trials()
    searched = time.time()
    if not any(t.state.name == "COMPLETE" for t in runner.study.trials):
        raise SystemExit(f"budget_accuracy_v1: no trial completed within the search share "
                         f"({runner.settings.time_limit:.0f} s); give a larger --budget-minutes or --search-fraction")
    best = runner.study.best_trial
    top = rank_trials(runner.study, args.final_top_k)
    train, val = final_cases(pool, args)
    # the top-K configs share the rest of the budget equally, one after another on all threads; their averaged
    # probabilities are the model (an ensemble of different good configs: the recipe plateaus within ≈ 15 min,
    # so K shorter trainings buy more than one long one).  Time is kept back for the ensemble's validation.
    ens_reserve = 2.0 * len(val) * len(top) if len(top) > 1 and val else 0.0
    members, member_dirs = [], []
    for i, t in enumerate(top):
        member_deadline = searched + (deadline - ens_reserve - searched) * (i + 1) / len(top)
        out = work / "final" / f"rank{i}_trial{t.number}"
        m = train_until(ds, t.user_attrs["full_config"], out, train, val, member_deadline,
                        steps=args.final_steps, seed=args.seed, cache_dir=work / "cache_final")
        m.update(trial=t.number, proxy_value=t.value)
        members.append(m)
        member_dirs.append(out)
    model = member_dirs[0] if len(member_dirs) == 1 else install_best(work / "final", member_dirs, ds.labels, [])
    fin = {"members": members, "model": str(model), "seconds": sum(m["seconds"] for m in members),
           "params": sum(m["params"] for m in members),
           "val_dice": (members[0]["val_dice"] if len(members) == 1
                        else evaluate_holdout(model, ds, val)["dice"] if val else None)}
    trained = time.time()
    fin.update(evaluate_both(model, ds, holdout))
    fin.update(wall=trained - start, select_s=selected - start, search_s=searched - selected,
               final_s=trained - searched, counts={k: v for k, v in summary["counts"].items() if v},
               best_number=best.number, best_value=best.value, best_params=best.params,
               breakdown=time_breakdown(search_dir, clock),
               n_proxy=(len(runner.train_cases), len(runner.val_cases)),
               # how this sitting was run: the comparison key leaves these out, so a saved arm must say them itself
               options={k: getattr(args, k) for k in ("search_fraction", "final_top_k", "space", "strategy",
                                                        "proxy_data", "proxy_net", "epochs", "steps", "jobs")})
    return fin


RESULTS = Path(__file__).resolve().parent / "results"


def arm_settings(args, dataset: str, holdout: list[str]) -> dict:
    """What must match for two separately run arms to be compared."""
    key = {"dataset": dataset, "budget_minutes": args.budget_minutes, "seed": args.seed,
           "holdout": sorted(holdout), "final_steps": args.final_steps, "threads": args.threads}
    if args.final_data != "split":             # arms saved before --final-data existed trained on the split
        key["final_data"] = args.final_data
    return key


def results_name(args) -> str:
    """bench/results/<name>.txt and <name>_<arm>.json: one family per ``--final-data``, so neither overwrites the
    other's like-for-like comparison."""
    return "budget_accuracy" + ("" if args.final_data == "split" else f"_{args.final_data}")


def arm_file(args, arm: str) -> Path:
    return RESULTS / f"{results_name(args)}_{arm}.json"


def save_arm(path: Path, result: dict, key: dict) -> None:
    write_text(path, json.dumps(
        {"settings": key, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(), "result": result},
        indent=1, default=float))


def resave_arm(path: Path, result: dict) -> None:
    """Write back a saved arm with figures added after its sitting (its settings, date and machine unchanged)."""
    saved = json.loads(path.read_text())
    saved["result"] = result
    write_text(path, json.dumps(saved, indent=1, default=float))


def rescore_per_case(arm: dict, ds, holdout: list[str]) -> bool:
    """Add per-case held-out Dice to an arm saved without it, from its model folder if that is still there.

    Why: the margin is a paired comparison on the same 30 cases, whose spread between arms is far smaller than
    the 0.0055 standard error of one arm's mean.  Inference is deterministic, so the re-scored mean must equal the
    saved one; if not, the folder was overwritten since the sitting and is not used.  Returns True if it added any.
    """
    model = Path(arm.get("model", ""))
    added = False
    for field, tta in (("holdout", False), ("holdout_tta", True)):
        if field not in arm or "per_case" in arm[field]:
            continue
        if not (model / "model.json").is_file():
            print(f"  no per-case {field} figures: the model folder {model} is gone")
            continue
        fresh = evaluate_holdout(model, ds, holdout, tta)
        if abs(fresh["dice"] - arm[field]["dice"]) > 1e-6:
            print(f"  {model}: re-scored {field} {fresh['dice']:.6f} ≠ saved {arm[field]['dice']:.6f}; the folder "
                  "changed since the sitting, not used")
            continue
        arm[field]["per_case"] = fresh["per_case"]
        added = True
    return added


def paired_text(search: dict, recipe: dict, labels: tuple[str, str] = ("search", "recipe")) -> str:
    """Mean per-case difference, its standard error and t 95 % interval, and how many cases the first won."""
    from scipy import stats

    a, b = search.get("per_case"), recipe.get("per_case")
    if not a or not b or set(a) != set(b):
        return ""
    names = sorted(a)
    diff = [a[n] - b[n] for n in names]
    ci = stats.ttest_rel([a[n] for n in names], [b[n] for n in names]).confidence_interval(0.95)
    return (f"{labels[0]} − {labels[1]} {sum(diff) / len(diff):+.4f} (SE {stats.sem(diff):.4f}, 95 % CI "
            f"{ci.low:+.4f} … {ci.high:+.4f}); the {labels[0]} scored higher on {sum(d > 0 for d in diff)} of "
            f"{len(diff)} cases")


def averaged_arms(search: dict, recipe: dict, ds, holdout: list[str], work: Path) -> dict | None:
    """Held-out Dice of the two arms' models averaged (``best/``'s ensemble format) — no verdict, a scale: what
    twice the budget buys when spent on a second, different model.  None if either model folder is gone."""
    folders = [Path(arm.get("model", "")) for arm in (search, recipe)]
    members = []
    for folder in folders:
        if (folder / "ensemble.json").is_file():
            members += [folder / m for m in json.loads((folder / "ensemble.json").read_text())["members"]]
        elif (folder / "model.json").is_file():
            members.append(folder)
        else:
            return None
    both = install_best(work / "both_arms", members, ds.labels, [])
    return evaluate_both(both, ds, holdout)


def load_arm(path: Path, key: dict) -> dict | None:
    name = path.stem.rsplit("_", 1)[-1]
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("settings") != key:
        return None
    print(f"  {name}: saved result of {saved['date']} ({saved['machine']})")
    return saved["result"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--budget-minutes", type=float, default=120.0, help="wall-clock budget of EACH arm")
    ap.add_argument("--search-fraction", type=float, default=0.5, help="share of the budget for the search phase")
    ap.add_argument("--space", default="unet-recipe", help="searched around the recipe (the base config)")
    ap.add_argument("--strategy", default="bohb")
    ap.add_argument("--proxy-data", default="mi+roi:0.25")
    ap.add_argument("--proxy-net", default="full",
                    help="full: the recipe's 1.2 M-param net is cheap enough; a proxy net would hide capacity")
    ap.add_argument("--epochs", type=int, default=8, help="maximum epochs per trial")
    ap.add_argument("--min-epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="steps per epoch in the search")
    ap.add_argument("--jobs", type=int, default=2, help="trials in parallel in the search (threads split)")
    ap.add_argument("--final-top-k", type=int, default=3,
                    help="the best K configs share the final budget; their probabilities are averaged")
    ap.add_argument("--final-steps", type=int, default=50, help="steps per epoch of the budgeted trainings")
    ap.add_argument("--final-data", choices=("split", "all"), default="split",
                    help="budgeted trainings on 80 %% of the pool with 20 %% internal validation (split), or on all "
                         "of it (all); arms compare only when they match")
    ap.add_argument("--holdout", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/autoseg_bench/budget_accuracy", help="scratch folder (wiped)")
    ap.add_argument("--arm", choices=("both", "recipe", "search", "compare"), default="both",
                    help="run one arm and compare with the other's saved result (same settings only); compare: "
                         "run neither, compare the two saved arms, re-scoring per case any arm saved without "
                         "per-case Dice from its model folder (for the paired difference)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/budget_accuracy.txt")
    args = ap.parse_args(argv)
    if not 0.05 <= args.search_fraction <= 0.95:
        ap.error("--search-fraction must be within 0.05–0.95")
    if args.final_top_k < 1 or args.jobs < 1:
        ap.error("--final-top-k and --jobs must be ≥ 1")
    return run_saved(results_name(args), args, _run)


def val_text(value: float | None) -> str:
    """An internal validation Dice, or why there is none (``--final-data all`` trains on the validation cases)."""
    return "– (all cases trained)" if value is None else f"{value:.4f}"


def holdout_text(arm: dict) -> str:
    """Held-out Dice as predicted by default, and with flip TTA where the arm measured it."""
    text = f"{arm['holdout']['dice']:.4f}"
    return text + (f" (flip TTA {arm['holdout_tta']['dice']:.4f})" if "holdout_tta" in arm else "")


def replanned(run: dict) -> str:
    """How the measured epoch time shortened the planned cosine horizon (runs saved before re-planning: '')."""
    if not run.get("replans"):
        return ""
    return f" (horizon re-planned {run['replans']}× to {run['epochs_replanned']} from the measured epoch time)"


def describe_search(search: dict) -> None:
    """What the search found and where its time went (printed with or without the recipe arm)."""
    states = ", ".join(f"{v} {k.lower()}" for k, v in search["counts"].items())
    if search.get("options"):                      # arms saved before options were recorded have none
        print("search sitting: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in search["options"].items()))
    print(f"search: case selection {search['select_s']:.0f} s, trials {search['search_s']:.0f} s ({states}), "
          f"final training {search['final_s']:.0f} s")
    print(f"search's best: trial {search['best_number']} (proxy val {search['best_value']:.4f} on "
          f"{search['n_proxy'][0]}/{search['n_proxy'][1]} proxy cases): {fmt_params(search['best_params'])}")
    for m in search["members"]:
        print(f"  ensemble member: trial {m['trial']} (proxy val {m['proxy_value']:.4f}) → internal val "
              f"{val_text(m['val_dice'])} on {m.get('train_cases', '?')} training cases after {m['epochs_done']}/{m['epochs_planned']} epochs{replanned(m)}, "
              f"{m['seconds']:.0f} s, "
              f"{m['params']:,} params")
    b = search["breakdown"]
    print(f"where the search phase went (s, summed over {b['trials']} trials): process start-up {b['startup']:.0f}, "
          f"data load + preprocessing {b['data']:.0f}, epochs {b['epochs']:.0f} (of which validation "
          f"{b['validate']:.0f}) over "
          f"{b['n_epochs']} epochs, parent bookkeeping {b['other']:.0f}")


def _run(args) -> int:
    t_all = time.perf_counter()
    full = args.budget_minutes >= 120
    print(f"# bench/budget_accuracy_v1.py — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"start: {machine_line()}")
    print(f"command: python bench/budget_accuracy_v1.py {' '.join(sys.argv[1:])}".rstrip())
    if not full:
        print(f"NOTE: REDUCED-BUDGET RUN ({args.budget_minutes:g} min per arm instead of 120) — it proves the "
              "benchmark runs end to end; its Dice figures are NOT the issue's 2-hour result. Full run:\n"
              "  .venv/bin/python bench/budget_accuracy_v1.py --budget-minutes 120   (≈ 4 h: two 2-hour arms, "
              "run on an otherwise idle 2-core machine)")
    ds = load_dataset(args.data)
    pool, holdout = split_holdout(ds, args.holdout, args.seed)
    print(f"data: {ds.name}, {len(ds.cases)} cases → {len(pool)} for search + training, {len(holdout)} held out "
          f"(seed {args.seed}); budget {args.budget_minutes:g} min per arm, 2 threads, CPU")
    work = Path(args.work)
    key = arm_settings(args, ds.name, holdout)
    arms: dict[str, dict | None] = {}
    for name, run_arm in (("recipe", run_recipe_arm), ("search", run_search_arm)):
        if args.arm in ("both", name):
            arms[name] = run_arm(ds, pool, holdout, args, work)
            print(f"  {name}: held-out {arms[name]['holdout']['dice']:.4f}")
            if not args.no_save:
                save_arm(arm_file(args, name), arms[name], key)
        else:
            arms[name] = load_arm(arm_file(args, name), key)
            if (args.arm == "compare" and arms[name] is not None and rescore_per_case(arms[name], ds, holdout)
                    and not args.no_save):
                resave_arm(arm_file(args, name), arms[name])
    recipe, search = arms["recipe"], arms["search"]
    if args.arm == "compare" and (recipe is None or search is None):
        raise SystemExit("budget_accuracy_v1: --arm compare needs both arms saved with these settings ("
                         + ", ".join(str(arm_file(args, n).relative_to(RESULTS.parents[1])) for n in arms
                                     if arms[n] is None) + " missing or different): run that arm first")
    if recipe is None or search is None:
        missing = "recipe" if recipe is None else "search"
        done = search if recipe is None else recipe
        print(f"\n{args.arm} arm: held-out mean foreground Dice {holdout_text(done)} ("
              + ", ".join(f"{k} {v:.4f}" for k, v in done["holdout"]["per_class"].items()) + f"); wall "
              f"{done['wall']:.0f} s. No saved {missing} arm with the same settings "
              f"({arm_file(args, missing).relative_to(RESULTS.parents[1])}): run --arm {missing} to compare.")
        other = next((p for p in (arm_file(args, missing), RESULTS / f"budget_accuracy_{missing}.json")
                      if p.is_file()), None)
        if other is not None:                  # for orientation only: named as such, never a verdict
            saved = json.loads(other.read_text())
            differ = sorted(k for k in set(key) | set(saved["settings"]) if key.get(k) != saved["settings"].get(k))
            print(f"  for orientation only (NOT like for like; settings differ in {', '.join(differ)}): the saved "
                  f"{missing} arm of {saved['date']} held out {holdout_text(saved['result'])}")
        if search is not None:
            describe_search(search)
        else:
            print(f"recipe: {recipe['epochs_done']}/{recipe['epochs_planned']} epochs{replanned(recipe)} × "
                  f"{recipe['steps']} steps in "
                  f"{recipe['seconds']:.0f} s ({recipe['step_s'] * 1000:.0f} ms/step, median measured), internal val "
                  f"{val_text(recipe['val_dice'])}, {recipe['params']:,} params")
        print(f"end: {machine_line()}")
        return 0

    print()
    print("| arm | wall s | case selection s | search s | trials | final training | step ms | "
          "internal val | held-out Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| fixed recipe (reference) | {recipe['wall']:.0f} | – | – | – | {recipe['epochs_done']}/"
          f"{recipe['epochs_planned']} ep × {recipe['steps']} steps, {recipe['seconds']:.0f} s | "
          f"{recipe['step_s'] * 1000:.0f} | {val_text(recipe['val_dice'])} | {holdout_text(recipe)} |")
    states = ", ".join(f"{v} {k.lower()}" for k, v in search["counts"].items())
    members = " + ".join(f"{m['epochs_done']}/{m['epochs_planned']}" for m in search["members"])
    step_ms = " / ".join(f"{m['step_s'] * 1000:.0f}" for m in search["members"])
    opt = {**vars(args), **search.get("options", {})}         # the saved sitting's own settings when recorded
    print(f"| search ({opt['strategy']}, {opt['space']}, {opt['proxy_data']} + {opt['proxy_net']}; top-"
          f"{len(search['members'])} ensemble) | {search['wall']:.0f} | {search['select_s']:.0f} | "
          f"{search['search_s']:.0f} | {states} | {members} ep × {search['members'][0]['steps']} steps, "
          f"{search['seconds']:.0f} s | {step_ms} | {val_text(search['val_dice'])} | {holdout_text(search)} |")
    print()
    print(f"recipe: {recipe['params']:,} params")
    describe_search(search)
    for name, arm in (("recipe", recipe), ("search", search)):
        print(f"  {name} held-out per class: " + ", ".join(f"{k} {v:.4f}" for k, v in arm["holdout"]["per_class"].items()))
    print()
    print("| measure | inference | search | reference (recipe) | difference | target | verdict |")
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    # like for like: both arms predicted the same way (TTA only when both arms measured it)
    for label, field in (("default", "holdout"), ("flip TTA, both arms", "holdout_tta")):
        if field not in search or field not in recipe:
            continue
        d_s, d_r = search[field]["dice"], recipe[field]["dice"]
        ok = d_s >= DICE_TARGET and d_s - d_r >= MARGIN_TARGET
        verdicts.append(ok)
        print(f"| held-out mean foreground Dice | {label} | {d_s:.4f} | {d_r:.4f} | {d_s - d_r:+.4f} | "
              f"≥ {DICE_TARGET} | {'PASS' if d_s >= DICE_TARGET else 'FAIL'} |")
        print(f"| margin over the fixed recipe | {label} | {d_s:.4f} | {d_r:.4f} | {d_s - d_r:+.4f} | "
              f"≥ +{MARGIN_TARGET} | {'PASS' if d_s - d_r >= MARGIN_TARGET else 'FAIL'} |")
    print()
    for label, field in (("default", "holdout"), ("flip TTA", "holdout_tta")):
        line = paired_text(search.get(field, {}), recipe.get(field, {}))
        if line:
            print(f"paired over the same held-out cases ({label}): {line}")
    ceiling = averaged_arms(search, recipe, ds, holdout, work)
    if ceiling:
        print(f"for scale, twice the budget: both arms' models averaged (4 CPU-hours) hold out {holdout_text(ceiling)}; "
              f"against the recipe {ceiling['holdout']['dice'] - recipe['holdout']['dice']:+.4f}"
              + (f" (flip TTA {ceiling['holdout_tta']['dice'] - recipe['holdout_tta']['dice']:+.4f})"
                 if "holdout_tta" in recipe else ""))
    ok = any(verdicts)
    print(f"overall: {'PASS' if ok else 'FAIL'}" + ("" if full else " (reduced budget: not the issue's verdict)")
          + f"; total {time.perf_counter() - t_all:.0f} s")
    print(f"end: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
