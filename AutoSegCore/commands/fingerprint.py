"""`autoseg fingerprint DATA [--out FILE]`: dataset statistics as a table, and as JSON written atomically."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option


def register(subparsers) -> None:
    p = subparsers.add_parser("fingerprint", help="summarise a dataset (spacing, shapes, intensities, label volumes)",
                              description="Validate a dataset, compute its fingerprint (what nnU-Net records: "
                                          "spacings, shapes, foreground intensity percentiles, label volumes), "
                                          "print a summary and optionally save it as JSON.")
    p.add_argument("data", metavar="DATA", help="dataset folder with dataset.json (or the dataset.json itself)")
    p.add_argument("--out", metavar="FILE", default=None, help="write the fingerprint JSON here (atomically)")
    add_events_option(p)
    p.set_defaults(func=run)


def _fmt(values, digits: int = 3) -> str:
    return " × ".join(f"{v:.{digits}g}" for v in values)


def summary_table(fp: dict):
    """The fingerprint as a rich table (what the CLI prints)."""
    from rich.table import Table

    t = Table(title=f"{fp['dataset']} — {fp['num_cases']} case(s), {fp['modality']}", show_header=True)
    t.add_column("property")
    t.add_column("value")
    t.add_row("channels", ", ".join(fp["channel_names"]))
    t.add_row("spacing median (mm)", _fmt(fp["spacing"]["median"]))
    t.add_row("spacing min / max", f"{_fmt(fp['spacing']['min'])} / {_fmt(fp['spacing']['max'])}")
    t.add_row("shape median", _fmt(fp["shape"]["median"], 4))
    t.add_row("shape min / max", f"{_fmt(fp['shape']['min'], 4)} / {_fmt(fp['shape']['max'], 4)}")
    t.add_row("nonzero box median", _fmt(fp["cropped_shape"]["median"], 4))
    t.add_row("anisotropic", f"{fp['anisotropic']} (ratio {fp['anisotropy_ratio']:.2f})")
    for ch in fp["intensity"]:
        if ch["mean"] is None:
            continue
        t.add_row(f"{ch['channel']} foreground", f"p0.5 {ch['p0.5']:.4g}, median {ch['p50']:.4g}, p99.5 {ch['p99.5']:.4g}, "
                                                 f"mean {ch['mean']:.4g} ± {ch['std']:.4g}")
    stats = fp["label_stats"]
    for key in list(stats)[:12]:
        s = stats[key]
        t.add_row(f"label {key} {s['name']}", f"in {s['cases_present']}/{fp['num_cases']} cases, "
                                            f"median {s['mm3_median'] / 1000:.4g} ml")
    if len(stats) > 12:
        t.add_row("…", f"{len(stats) - 12} more labels (see the JSON)")
    return t


def run(args, events) -> int:
    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.data.fingerprint import compute_fingerprint, save_fingerprint
    from AutoSegCore.utils.io import check_output_file

    if args.out:
        check_output_file(args.out)              # before minutes of statistics, not after
    ds = load_dataset(args.data, min_cases=1)
    fp = compute_fingerprint(ds)
    from rich.console import Console

    console = Console(stderr=events.to_stdout)
    for w in ds.warnings:
        console.print(f"warning: {w}", markup=False)
    console.print(summary_table(fp))
    if args.out:
        path = save_fingerprint(fp, args.out)
        console.print(f"fingerprint written to {path}", markup=False)
        events.emit("artifact", kind="fingerprint", path=str(path))
    events.emit("done", command="fingerprint", dataset=ds.name)
    return 0
