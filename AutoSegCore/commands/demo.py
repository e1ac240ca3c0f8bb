"""`autoseg demo --out DIR` → AutoSegCore.demo.run_demo."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option, device, positive_int


def register(sub) -> None:
    p = sub.add_parser("demo", help="proxy search + final training + report on the bundled cases (≈ 4 min on 2 CPU cores)")
    p.add_argument("--out", default="demo-output", help="output folder")
    p.add_argument("--device", type=device, default="auto")
    p.add_argument("--trials", type=positive_int, help="override the number of search trials (default 6)")
    p.add_argument("--final-time", help="wall-clock budget of the winner's training (default 3m; its lr schedule "
                                        "ends on it)")
    p.add_argument("--final-epochs", type=positive_int, help="train the winner for this many epochs instead (with "
                                                     "--final-time: an epoch cap)")
    p.add_argument("--jobs", type=positive_int, default=1, help="trials in parallel (CPU cores are split)")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.demo import DEMO_SEARCH, run_demo
    from AutoSegCore.search.settings import parse_duration
    from AutoSegCore.progress import console, search_progress

    with search_progress(events, args.trials or DEMO_SEARCH["trials"]):
        metrics = run_demo(args.out, events=events, device=args.device, trials=args.trials,
                           final_epochs=args.final_epochs, final_time=parse_duration(args.final_time, "--final-time"),
                           jobs=args.jobs)
    console.print(f"demo: held-out mean Dice {metrics['mean_dice']:.4f} per class {metrics['dice_per_class']}\n"
                  f"  predictions: {args.out}/predictions (.nii.gz and .seg.nrrd)\n"
                  f"  report:      {metrics['report']}")
    events.emit("done", mean_dice=metrics["mean_dice"])
    return 0
