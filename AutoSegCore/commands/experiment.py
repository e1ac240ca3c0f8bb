"""`autoseg experiment proxy-correlation DATA [--out DIR] [--grid small|paper] [--epochs N] [--steps-per-epoch N]
[--budget 0.25 ...] [--seed 0] [--events -]`.

A thin wrapper over ``AutoSegCore.proxy.experiment.run_proxy_correlation``: writes DIR/results.json,
DIR/correlation.png and DIR/dice_vs_data.png, and prints the summary table.  Re-running the same command resumes.
"""
from __future__ import annotations

import sys

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.cli_types import device, positive_int
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    p = sub.add_parser("experiment", help="experiments that check the engine's shortcuts against the full thing")
    kinds = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    q = kinds.add_parser("proxy-correlation",
                         help="proxy paper §4: do proxy data / proxy nets rank hyper-parameters like full training?")
    q.add_argument("data", help="dataset folder (MSD or nnU-Net raw layout)")
    q.add_argument("--out", default="proxy-correlation", help="output folder (re-use it to resume)")
    q.add_argument("--grid", choices=("small", "paper"), default="small",
                   help="small = 3 optimisers × 2 learning rates; paper = the proxy paper's 4 × 4")
    q.add_argument("--epochs", type=positive_int, default=None, help="epochs per run (default 2)")
    q.add_argument("--steps-per-epoch", type=positive_int, default=None, help="optimiser steps per epoch (default 30)")
    q.add_argument("--budget", nargs="+", default=["0.25"],
                   help="proxy-data size: fraction of the training pool (<1) or a count; several give Fig. 4's curve")
    q.add_argument("--holdout", type=float, default=None, help="fraction of cases held back for scoring (default 0.2)")
    q.add_argument("--seed", type=int, default=0, help="seed of the hold-out split, selections and training")
    q.add_argument("--keep-models", action="store_true", help="keep every trained model (default: only results)")
    q.add_argument("--threads", type=positive_int, default=None, help="torch threads (default AUTOSEG_THREADS or all cores)")
    q.add_argument("--device", type=device, default="auto", help="auto, cpu or cuda[:N]")
    add_private_option(q)
    add_events_option(q)
    q.set_defaults(func=run)


def _budget(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--budget '{text}' is not a number", "give a fraction like 0.25 or a count like 10") from None
    return int(value) if value >= 1 and value.is_integer() else value


def run(args, events) -> int:
    from AutoSegCore.utils.folder_lock import command_output

    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from rich.console import Console

    from AutoSegCore.proxy import experiment as exp
    from AutoSegCore.utils.device import set_threads

    set_threads(args.threads)
    console = Console(file=sys.stderr if events.to_stdout else sys.stdout)
    kwargs = {"epochs": args.epochs or exp.DEFAULT_EPOCHS,
              "steps_per_epoch": args.steps_per_epoch or exp.DEFAULT_STEPS,
              "holdout": exp.DEFAULT_HOLDOUT if args.holdout is None else args.holdout}
    if args.epochs is not None and args.epochs < 1 or args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise ConfigError("--epochs and --steps-per-epoch must be positive integers", "e.g. --epochs 2")
    result = exp.run_proxy_correlation(args.data, args.out, grid=args.grid, budget=[_budget(b) for b in args.budget],
                                       seed=args.seed, keep_models=args.keep_models, device=args.device,
                                       events=events, show_progress=console.is_terminal, **kwargs)
    console.print(exp.format_table(result.data), markup=False, highlight=False)
    console.print(f"trained {result.trained}, skipped {result.skipped} (already done); wrote "
                  + ", ".join(str(p) for p in result.files), markup=False, highlight=False)
    return 0
