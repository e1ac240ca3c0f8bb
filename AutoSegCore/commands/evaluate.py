"""`autoseg evaluate PRED_DIR DATA [--out metrics.json]` → training.api.evaluate_folder."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="Dice and HD95 per class of predictions against a dataset's labels")
    p.add_argument("predictions", help="folder of <case>.nii.gz predictions")
    p.add_argument("data", help="dataset folder with the ground truth")
    p.add_argument("--out", help="write the metrics JSON here")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from rich.table import Table

    from AutoSegCore.training.api import evaluate_folder
    from AutoSegCore.utils.io import write_json
    from AutoSegCore.progress import console

    summary = evaluate_folder(args.predictions, args.data)
    ignored = summary.get("ignored") or []
    if ignored:
        shown = ", ".join(ignored[:10]) + (f" (+{len(ignored) - 10} more)" if len(ignored) > 10 else "")
        note = (f"warning: {len(ignored)} prediction(s) in {args.predictions} are not cases of the dataset and were "
                f"not evaluated: {shown}")
        console.print(note, markup=False, highlight=False, soft_wrap=True)
        events.emit("log", message=note)
    if args.out:
        write_json(args.out, summary)
        events.emit("artifact", kind="metrics", path=args.out)
    table = Table(title=f"{len(summary['cases'])} cases — mean Dice {summary['mean_dice']:.4f}")
    table.add_column("class"); table.add_column("Dice"); table.add_column("HD95 (mm)")
    for k, v in summary["dice_per_class"].items():
        hd = summary["hd95_per_class"][k]
        table.add_row(k, f"{v:.4f}", "–" if hd is None else f"{hd:.2f}")
    console.print(table)
    events.emit("done", mean_dice=summary["mean_dice"], dice_per_class=summary["dice_per_class"],
                ignored=ignored)
    return 0
