"""`autoseg validate DATA`: check a dataset folder and print OK (plus warnings) or the first problem (exit 2)."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.cli_types import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a dataset folder (MSD or nnU-Net raw layout) before a search",
                              description="Check every case of a dataset: files, headers, geometry, label values, "
                                          "NaN/Inf. Prints OK or the first problem with a hint (exit code 2).")
    p.add_argument("data", metavar="DATA", help="dataset folder with dataset.json (or the dataset.json itself)")
    p.add_argument("--shallow", action="store_true", help="read headers only (skip voxel checks)")
    p.add_argument("--min-cases", type=positive_int, default=2,
                   help="fewest labelled cases accepted (default 2: training needs one case to train, one to validate)")
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.data.dataset import load_dataset

    ds = load_dataset(args.data, deep=not args.shallow, min_cases=args.min_cases)
    for w in ds.warnings:
        print(f"warning: {w}")
    print(f"OK: {ds.name}: {len(ds.cases)} cases, {ds.num_channels} channel(s) ({', '.join(ds.channel_names)}), "
          f"{len(ds.foreground_labels)} foreground label(s), {ds.source} layout")
    events.emit("done", command="validate", dataset=ds.name, cases=len(ds.cases), warnings=ds.warnings)
    return 0
