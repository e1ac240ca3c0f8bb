"""`autoseg train DATA [--config CFG] --out MODEL_DIR` → training.api.train_model(plan=True): the dataset's plan
(``autoseg plan``) with the config merged over it; ``--no-plan`` merges the config over the bare defaults."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.cli_types import device, positive_int
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    p = sub.add_parser("train", help="train one configuration on a dataset (resumes from a checkpoint in --out)")
    p.add_argument("data", help="dataset folder (MSD or nnU-Net raw layout)")
    p.add_argument("--config", help="YAML/JSON config (sections network/preprocessing/training/inference), merged "
                                    "over the dataset's plan: what it leaves out is planned")
    p.add_argument("--no-plan", action="store_true",
                   help="do not plan: the config over the fixed defaults (no resampling, the whole-case canvas)")
    p.add_argument("--out", required=True, help="model folder to write (model.pt, model.json, checkpoint.pt)")
    p.add_argument("--epochs", type=positive_int, help="override training.epochs")
    p.add_argument("--steps-per-epoch", type=positive_int, help="override training.steps_per_epoch")
    p.add_argument("--time", help="train for this wall-clock budget, e.g. 30m or 1h30m: the plan is sized for it and "
                                  "the lr schedule re-fitted to end on it (training.time_limit); --epochs then caps "
                                  "the epochs (default with a plan: the plan's budget, 20m on a CPU)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of cases held out for validation (0: train on all, no validation)")
    p.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--cache-dir", help="disk cache for preprocessed arrays")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    add_private_option(p)
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.utils.folder_lock import command_output

    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from AutoSegCore.config import EPOCH_CAP_WITH_TIME_LIMIT, make_config, read_config, validate_config
    from AutoSegCore.errors import ConfigError
    from AutoSegCore.search.settings import parse_duration
    from AutoSegCore.training.api import train_model
    from AutoSegCore.progress import console, epoch_progress

    override = read_config(args.config) if args.config else {}
    training = override.setdefault("training", {})
    if args.epochs:
        training["epochs"] = args.epochs
    if args.steps_per_epoch:
        training["steps_per_epoch"] = args.steps_per_epoch
    if args.time is not None:
        training["time_limit"] = parse_duration(args.time, "--time")
        training["epochs"] = args.epochs or EPOCH_CAP_WITH_TIME_LIMIT
    cfg = make_config(override)            # checked before any work (source: the option that set the value)
    validate_config(cfg, source="--time" if args.time is not None else "config")
    out = Path(args.out)
    if out.exists() and not out.is_dir():         # before any work (cli.py turns it into a one-line error)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(out))
    if (out / "model.pt").exists() and not (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a trained model", "choose another --out folder")
    from AutoSegCore.commands.plan import print_plan

    events.listeners.append(lambda rec: print_plan(rec["plan"]) if rec["event"] == "plan" else None)
    with epoch_progress(events, cfg["training"]["epochs"], "training"):
        events.emit("study_started", kind="train", data=str(args.data), out=str(out))   # a log's first line
        result = train_model(args.data, override, out, val_fraction=args.val_fraction, device=args.device,
                             events=events, cache_dir=args.cache_dir, resume=not args.no_resume,
                             plan=not args.no_plan)
    events.emit("artifact", kind="model", path=str(out))
    events.emit("done", val_dice=result.val_dice, val_dice_per_class=result.val_dice_per_class,
                seconds=result.seconds)
    if result.val_dice_per_class:
        console.print(f"validation mean Dice {result.val_dice:.4f} {result.val_dice_per_class} → {out}")
    else:                                          # --val-fraction 0: every case trained, none to score on
        console.print(f"trained on every case, no validation (--val-fraction 0) → {out}")
    return 0
