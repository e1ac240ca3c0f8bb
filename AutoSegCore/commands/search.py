"""`autoseg search DATA --space S --strategy T [...] --out DIR` → AutoSegCore.pipeline.run_search."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.cli_types import device, folds, positive_float, positive_int
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    p = sub.add_parser("search", help="search a space with a strategy (resumes when re-run on the same --out)")
    p.add_argument("data", help="dataset folder (MSD or nnU-Net raw layout)")
    p.add_argument("--space", default="unet-pipeline",
                   help="built-in space (`autoseg choices` lists them) or a YAML/JSON space file")
    p.add_argument("--strategy", default="bohb", help="search strategy; `autoseg choices` lists them (default bohb)")
    p.add_argument("--proxy-data", default="full", help="full, or METHOD[+roi]:BUDGET e.g. mi+roi:0.25, ncc:20")
    p.add_argument("--proxy-net", default="full",
                   help="full; levels=5|4|3 (the proxy paper's fixed proxy network: size not searched); width=F, "
                        "e.g. width=0.25 (shrinks each sampled net by F, keeps the order of sizes); or levels=N,width=F")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--trials", type=positive_int, help="number of trials in the study")
    g.add_argument("--time", help="search time budget, e.g. 30m or 2h: trials are sized so that several finish in it "
                                  "(if none can, the planned recipe is trained); trials still running when it ends "
                                  "are stopped at their last checkpoint and re-queued for a re-run.  Without "
                                  "--trials and --time: 1h on a CPU, 3h on a GPU")
    p.add_argument("--jobs", type=positive_int, default=1, help="trials in parallel on this machine (CPU cores are split)")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite file DIR/study.db); postgresql://… for many machines")
    p.add_argument("--study-name", help="study name (default: the --out folder's name)")
    p.add_argument("--epochs", type=positive_int, default=20, help="maximum epochs per trial")
    p.add_argument("--min-epochs", type=positive_int,
                   help="minimum budget (BOHB/Hyperband; default 2, or --epochs when smaller)")
    p.add_argument("--steps-per-epoch", type=positive_int, help="override training.steps_per_epoch")
    p.add_argument("--config", help="base config (YAML/JSON) the space's points are merged over (itself merged over "
                                    "the dataset's plan)")
    p.add_argument("--no-plan", action="store_true",
                   help="do not plan the dataset: points merged over the fixed defaults (a space's relative ranges "
                        "then apply to those)")
    p.add_argument("--no-plan-trial", action="store_true",
                   help="do not queue the planned recipe as the first trial (by default a searched config must beat "
                        "it at the trials' fidelity to win)")
    p.add_argument("--trial-timeout", help="kill a trial after this long, e.g. 20m")
    p.add_argument("--trial-memory-gb", type=positive_float,
                   help="memory limit per trial: its address space on the CPU (Linux); on a GPU a cap of the "
                        "GPU's memory (the smaller of this and its share of a GPU it shares)")
    p.add_argument("--final-top-k", type=positive_int, default=1, help="retrain and ensemble the best K configs")
    p.add_argument("--final-epochs", type=positive_int, help="epochs of the final training (default: --epochs)")
    p.add_argument("--final-steps-per-epoch", type=positive_int, help="steps per epoch of the final training")
    p.add_argument("--final-time", help="wall-clock budget of the final training, e.g. 80m, shared equally by the "
                                        "top-K configs or folds; each one's lr schedule ends on its share "
                                        "(--final-epochs then caps the epochs)")
    p.add_argument("--final-folds", type=folds, default=0, help="k-fold cross-validation of the best config (ensemble)")
    p.add_argument("--final-tta", choices=("auto", "on", "off"), default="auto",
                   help="flip test-time augmentation of best/: auto keeps it only if it scores higher on validation")
    p.add_argument("--no-final", action="store_true", help="stop after the search (no retraining)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="auto")
    p.add_argument("--devices", help="GPUs the trials spread over, e.g. cuda:0,cuda:1 (default: every visible GPU "
                   "for --device auto/cuda); --jobs trials sharing one GPU each get an equal share of its memory")
    p.add_argument("--forecast-only", action="store_true",
                   help="measure a few steps, print the expected wall-clock of the search and final training "
                        "(also DIR/forecast.json) and exit without running trials")
    p.add_argument("--out", required=True, help="work folder (study.db, proxy.json, trials/, best/, report.html)")
    add_private_option(p)
    add_events_option(p)
    p.set_defaults(func=run)


def settings_from_args(args):
    from AutoSegCore.search.settings import SearchSettings, parse_duration

    budget_first = args.trials is None and args.time is None
    if budget_first:
        from AutoSegCore.search.budget import default_budget

        args.time = str(default_budget(args.device))
    return SearchSettings(
        data=args.data, out=args.out, space=args.space, strategy=args.strategy, proxy_data=args.proxy_data,
        proxy_net=args.proxy_net, trials=args.trials, time_limit=parse_duration(args.time, "--time"), jobs=args.jobs,
        storage=args.storage, study_name=args.study_name, epochs=args.epochs, min_epochs=args.min_epochs,
        steps_per_epoch=args.steps_per_epoch, seed=args.seed, device=args.device, devices=args.devices,
        trial_timeout=parse_duration(args.trial_timeout, "--trial-timeout"), trial_memory_gb=args.trial_memory_gb,
        base_config=args.config or {}, final_top_k=args.final_top_k, final_epochs=args.final_epochs,
        final_time=parse_duration(args.final_time, "--final-time"),
        final_steps_per_epoch=args.final_steps_per_epoch,
        final_folds=args.final_folds, final_tta=args.final_tta, final=not args.no_final, plan=not args.no_plan,
        plan_trial=not args.no_plan_trial)


def run(args, events) -> int:
    from AutoSegCore.utils.folder_lock import command_output

    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from AutoSegCore.pipeline import run_search
    from AutoSegCore.search.runner import describe_summary
    from AutoSegCore.utils.signals import stop_signals_interrupt
    from AutoSegCore.progress import console, search_progress

    budget_first = args.trials is None and args.time is None
    settings = settings_from_args(args)            # every value checked here (SearchSettings), before any work
    if budget_first:
        from AutoSegCore.proxy.fidelity import Fidelity
        from AutoSegCore.spaces import get_space
        from AutoSegCore.utils.durations import format_duration

        get_space(settings.space)                   # a mistyped name stands alone, before any budget line
        Fidelity.parse(settings.proxy_data, settings.proxy_net)

        note = (f"budget: neither --trials nor --time given: searching for {format_duration(settings.time_limit)}, "
                "trials sized by the cost forecast so that several finish, then the final training")
        console.print(note, markup=False, highlight=False, soft_wrap=True)
        events.emit("log", message=note)
    if getattr(args, "forecast_only", False):
        from AutoSegCore.pipeline import forecast_only

        forecast = forecast_only(settings, events)
        if forecast is None:
            return 1
        console.print(forecast["text"], markup=False, highlight=False)
        return 0
    with stop_signals_interrupt(), search_progress(events, settings.trials):     # SIGTERM/SIGHUP act as Ctrl-C
        summary = run_search(settings, events)
    final = summary.get("final", {}).get("ensemble", {})
    if not summary["counts"].get("COMPLETE") and final:      # the planned recipe stood in for the search
        console.print(f"no trial completed in the search budget; the planned recipe was trained instead: validation "
                      f"Dice {final.get('val_dice', 0):.4f} {final.get('val_dice_per_class')} → {settings.out}/best")
        return 0
    if summary.get("no_signal") and final:                   # its trials learned nothing: the plan got their time
        console.print(f"the trials were too short to learn this data, so the search stopped and the planned recipe "
                      f"was trained for the rest of the time: validation Dice {final.get('val_dice', 0):.4f} "
                      f"{final.get('val_dice_per_class')} → {settings.out}/best")
        return 0
    if not summary["counts"].get("COMPLETE"):
        return _nothing_completed(summary)
    best = summary.get("best")
    console.print(f"trials: {describe_summary(summary)}" + (f" {best['params']}" if best else ""))
    if final:
        console.print(f"final model: validation Dice {final.get('val_dice', 0):.4f} {final.get('val_dice_per_class')} "
                      f"→ {settings.out}/best")
    return 0


def _nothing_completed(summary: dict) -> int:
    """No trial completed, so there is no model.  Failures (every config crashed: a broken base config, data or
    environment) are a ``SearchFailed`` (exit 1) naming the last trial's error; a time limit that ended first
    exits 0 and says how to go on."""
    from AutoSegCore.errors import SearchFailed
    from AutoSegCore.search.runner import describe_summary
    from AutoSegCore.progress import console

    failure = summary.get("last_error")
    if failure is None:
        console.print(f"trials: {describe_summary(summary)} — no trial completed yet, so no model; re-run the same "
                      "command to continue (a longer --time lets a trial finish)", markup=False, highlight=False)
        return 0
    raise SearchFailed(f"no trial completed ({describe_summary(summary)}); the last failure, trial "
                       f"{failure['trial']}: {failure['error']}",
                       f"its log is in {failure['folder']}; fix the cause and re-run the same command "
                       "(the study keeps its trials)")
