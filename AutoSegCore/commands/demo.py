"""`autoseg demo --out DIR` → AutoSegCore.demo.run_demo."""
from __future__ import annotations

from AutoSegCore.cli import add_events_option


def register(sub) -> None:
    p = sub.add_parser("demo", help="train, predict and evaluate on the bundled demo cases (a few minutes on CPU)")
    p.add_argument("--out", default="demo-output", help="output folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, help="override the demo's epochs (for a quicker look)")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.demo import DEMO_CONFIG, run_demo
    from AutoSegCore.utils.progress import console, epoch_progress

    with epoch_progress(events, args.epochs or DEMO_CONFIG["training"]["epochs"], "demo training"):
        summary = run_demo(args.out, events=events, device=args.device, epochs=args.epochs)
    console.print(f"demo: held-out mean Dice {summary['mean_dice']:.4f} per class {summary['dice_per_class']} "
                  f"— predictions in {args.out}/predictions (.nii.gz and .seg.nrrd)")
    events.emit("done", mean_dice=summary["mean_dice"])
    return 0
